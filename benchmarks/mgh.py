"""The Moré-Garbow-Hillstrom test problems as nonlinear least squares, in jax.numpy.

J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing unconstrained optimization software",
ACM TOMS 7 (1981) 17-41: all 35 problems in the paper's numbering, each a residual function
``r: (n,) -> (m,)`` with objective ``f(x) = sum(r(x)**2)``. The residuals are pure
jax.numpy (no Python control flow on values: jit-, vmap- and grad-friendly) and compute in
float64 when called under ``jax.enable_x64(True)`` (the project never turns x64 on
globally). No guards beyond the paper's formulas: far from the start some residuals
overflow to inf or nan.

Sizes of the variable-dimension problems are fixed to the ones most often reported (see
``problems``). ``f_min`` is the paper's value for that size, refined numerically where the
paper prints few digits (scipy ``least_squares(method="lm")`` on these residuals from the
1x, 10x and 100x starts; every refined value agrees with the paper to its printed digits).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One MGH problem.

    ``residuals`` maps x of shape (n,) to r of shape (m,); ``x0`` is the paper's standard
    start; ``f_min`` the smallest known f at a minimiser; ``x_min`` the minimiser where the
    paper gives a single point and it is unique (else None); ``local_minima`` the f values
    of the other (local, possibly at infinity) minima the paper lists.
    """

    number: int
    name: str
    n: int
    m: int
    residuals: Callable[[jnp.ndarray], jnp.ndarray]
    x0: np.ndarray
    f_min: float
    x_min: np.ndarray | None = None
    local_minima: tuple[float, ...] = ()

    def start(self, scale: float = 1.0) -> np.ndarray:
        """``scale * x0``: MGH's 1x, 10x and 100x starts for scale 1, 10, 100."""
        return scale * self.x0


def _i(m: int) -> np.ndarray:
    """The residual index i = 1..m as float64."""
    return np.arange(1.0, m + 1)


BARD_Y = np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96,
                   1.34, 2.10, 4.39])
GAUSSIAN_Y = np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
                       0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009])
MEYER_Y = np.array([34780.0, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030,
                    6005, 5147, 4427, 3820, 3307, 2872])
KOWALIK_Y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342,
                      0.0323, 0.0235, 0.0246])
KOWALIK_U = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])
OSBORNE1_Y = np.array([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784,
                       0.751, 0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522,
                       0.506, 0.490, 0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420,
                       0.414, 0.411, 0.406])
OSBORNE2_Y = np.array([1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725,
                       0.746, 0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724,
                       0.649, 0.649, 0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495,
                       0.500, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429,
                       0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668, 0.645, 0.632,
                       0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
                       0.428, 0.292, 0.162, 0.098, 0.054])


# Residuals, in the paper's order. Those written for any n serve both the fixed-size
# problem and its extended form (1 and 21, 13 and 22, 33 and 34).

def rosenbrock(x):
    """(1), (21): pairs (10 (x_2i - x_2i-1^2), 1 - x_2i-1); n even, m = n."""
    odd, even = x[0::2], x[1::2]
    return jnp.stack([10 * (even - odd**2), 1 - odd], axis=1).ravel()


def freudenstein_roth(x):
    return jnp.stack([-13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
                      -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1]])


def powell_badly_scaled(x):
    return jnp.stack([1e4 * x[0] * x[1] - 1, jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x):
    return jnp.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])


def beale(x):
    return np.array([1.5, 2.25, 2.625]) - x[0] * (1 - x[1] ** _i(3))


def jennrich_sampson(x, m):
    i = _i(m)
    return 2 + 2 * i - (jnp.exp(i * x[0]) + jnp.exp(i * x[1]))


def helical_valley(x):
    """theta = arctan(x2/x1) / (2 pi), plus 1/2 where x1 < 0."""
    theta = jnp.arctan(x[1] / x[0]) / (2 * np.pi) + jnp.where(x[0] < 0, 0.5, 0.0)
    return jnp.stack([10 * (x[2] - 10 * theta), 10 * (jnp.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2]])


def bard(x):
    u = _i(15)
    v = 16 - u
    return BARD_Y - (x[0] + u / (v * x[1] + np.minimum(u, v) * x[2]))


def gaussian(x):
    t = (8 - _i(15)) / 2
    return x[0] * jnp.exp(-x[1] * (t - x[2]) ** 2 / 2) - GAUSSIAN_Y


def meyer(x):
    t = 45 + 5 * _i(16)
    return x[0] * jnp.exp(x[1] / (t + x[2])) - MEYER_Y


def gulf(x, m):
    t = _i(m) / 100
    y = 25 + (-50 * np.log(t)) ** (2 / 3)
    return jnp.exp(-jnp.abs(y - x[1]) ** x[2] / x[0]) - t


def box_3d(x, m):
    t = _i(m) / 10
    return jnp.exp(-t * x[0]) - jnp.exp(-t * x[1]) - x[2] * (np.exp(-t) - np.exp(-10 * t))


def powell_singular(x):
    """(13), (22): blocks of four; n a multiple of 4, m = n."""
    a, b, c, d = x.reshape(-1, 4).T
    return jnp.stack([a + 10 * b, np.sqrt(5) * (c - d), (b - 2 * c) ** 2,
                      np.sqrt(10) * (a - d) ** 2], axis=1).ravel()


def wood(x):
    return jnp.stack([10 * (x[1] - x[0] ** 2), 1 - x[0], np.sqrt(90) * (x[3] - x[2] ** 2),
                      1 - x[2], np.sqrt(10) * (x[1] + x[3] - 2), (x[1] - x[3]) / np.sqrt(10)])


def kowalik_osborne(x):
    u = KOWALIK_U
    return KOWALIK_Y - x[0] * (u**2 + u * x[1]) / (u**2 + u * x[2] + x[3])


def brown_dennis(x, m):
    t = _i(m) / 5
    return (x[0] + t * x[1] - np.exp(t)) ** 2 + (x[2] + x[3] * np.sin(t) - np.cos(t)) ** 2


def osborne1(x):
    t = 10 * (_i(33) - 1)
    return OSBORNE1_Y - (x[0] + x[1] * jnp.exp(-t * x[3]) + x[2] * jnp.exp(-t * x[4]))


def biggs_exp6(x, m):
    t = _i(m) / 10
    y = np.exp(-t) - 5 * np.exp(-10 * t) + 3 * np.exp(-4 * t)
    return (x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1])
            + x[5] * jnp.exp(-t * x[4]) - y)


def osborne2(x):
    t = (_i(65) - 1) / 10
    bumps = x[1:4, None] * jnp.exp(-(t - x[8:11, None]) ** 2 * x[5:8, None])
    return OSBORNE2_Y - (x[0] * jnp.exp(-t * x[4]) + bumps.sum(axis=0))


def watson(x):
    """29 residuals at t_i = i/29, then x_1 and x_2 - x_1^2 - 1; m = 31."""
    n = x.shape[0]
    powers = (_i(29)[:, None] / 29) ** np.arange(n)  # t_i^(j-1), (29, n)
    r = powers[:, :-1] @ (np.arange(1, n) * x[1:]) - (powers @ x) ** 2 - 1
    return jnp.concatenate([r, jnp.stack([x[0], x[1] - x[0] ** 2 - 1])])


def penalty1(x):
    return jnp.append(np.sqrt(1e-5) * (x - 1), jnp.sum(x**2) - 0.25)


def penalty2(x):
    """m = 2n: x_1 - 0.2, the n - 1 neighbour terms, the n - 1 single terms, the weighted sum."""
    n, a = x.shape[0], np.sqrt(1e-5)
    i = _i(n)[1:]
    e = jnp.exp(x / 10)
    return jnp.concatenate([
        jnp.stack([x[0] - 0.2]),
        a * (e[1:] + e[:-1] - (np.exp(i / 10) + np.exp((i - 1) / 10))),
        a * (e[1:] - np.exp(-0.1)),
        jnp.stack([jnp.sum((n - _i(n) + 1) * x**2) - 1])])


def variably_dimensioned(x):
    s = jnp.sum(_i(x.shape[0]) * (x - 1))
    return jnp.concatenate([x - 1, jnp.stack([s, s**2])])


def trigonometric(x):
    n = x.shape[0]
    return n - jnp.sum(jnp.cos(x)) + _i(n) * (1 - jnp.cos(x)) - jnp.sin(x)


def brown_almost_linear(x):
    n = x.shape[0]
    return jnp.append(x[:-1] + jnp.sum(x) - (n + 1), jnp.prod(x) - 1)


def _grid(n: int) -> tuple[float, np.ndarray]:
    """h = 1/(n+1) and t_i = i h of problems 28 and 29."""
    h = 1 / (n + 1)
    return h, _i(n) * h


def discrete_boundary_value(x):
    h, t = _grid(x.shape[0])
    padded = jnp.pad(x, 1)  # x_0 = x_(n+1) = 0
    return 2 * x - padded[:-2] - padded[2:] + h**2 * (x + t + 1) ** 3 / 2


def discrete_integral_equation(x):
    h, t = _grid(x.shape[0])
    c = (x + t + 1) ** 3
    below = jnp.cumsum(t * c)  # sum over j <= i
    tail = (1 - t) * c
    above = jnp.sum(tail) - jnp.cumsum(tail)  # sum over j > i
    return x + h * ((1 - t) * below + t * above) / 2


def broyden_tridiagonal(x):
    padded = jnp.pad(x, 1)
    return (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1


def broyden_banded(x):
    """J_i = {j != i : i - 5 <= j <= i + 1}."""
    i, j = np.indices((x.shape[0],) * 2)
    band = ((j != i) & (j >= i - 5) & (j <= i + 1)).astype(float)
    return x * (2 + 5 * x**2) + 1 - band @ (x * (1 + x))


def linear_full_rank(x, m):
    return jnp.pad(x, (0, m - x.shape[0])) - 2 * jnp.sum(x) / m - 1


def linear_rank1(x, m, zero: bool = False):
    """(33): i (sum_j j x_j) - 1; (34, zero=True): the same without x_1, x_n, r_1 and r_m."""
    i, j = _i(m), _i(x.shape[0])
    if zero:
        i, j = np.where((i > 1) & (i < m), i - 1, 0), np.where((j > 1) & (j < j[-1]), j, 0)
    return i * (j @ x) - 1


def chebyquad(x, m):
    """r_i = mean_j T_i(x_j) - int_0^1 T_i, T_i Chebyshev shifted to [0, 1], i = 1..m."""
    y = 2 * x - 1
    prev, cur, r = jnp.ones_like(x), y, []
    for i in range(1, m + 1):
        r.append(jnp.mean(cur) + (1 / (i**2 - 1) if i % 2 == 0 else 0.0))
        prev, cur = cur, 2 * y * cur - prev
    return jnp.stack(r)


def _fix(f, **sizes):
    """f with its size arguments fixed: a function of x alone."""
    return lambda x: f(x, **sizes)


def problems() -> list[Problem]:
    """All 35 problems in MGH order.

    Sizes: Jennrich-Sampson m = 10; Gulf m = 99; Box 3D m = 10; Brown-Dennis m = 20; Biggs
    EXP6 m = 13; Watson n = 9; Extended Rosenbrock n = 10; Extended Powell n = 12; problems
    23-31 n = 10; linear problems 32-34 n = 5, m = 10; Chebyquad n = m = 8.

    f_min given to 12 digits was refined numerically (the paper prints six). Exact ones:
    32: m - n; 33: m (m - 1) / (2 (2m + 1)); 34: (m^2 + 3m - 6) / (2 (2m - 3)). Local
    minima: Freudenstein-Roth at (11.41..., -0.8968...); Bard at (mean y, -inf, -inf), where
    f = sum (y - mean y)^2; Kowalik-Osborne at (inf, -14.07..., -inf, -inf) and Biggs EXP6
    to the paper's digits; Brown almost-linear at (0, ..., 0, n + 1). Not in the paper:
    Levenberg-Marquardt from all three Trigonometric starts stops at f = 2.79506e-5.
    """
    a = np.array
    n = 10
    _, t = _grid(n)
    return [
        Problem(1, "Rosenbrock", 2, 2, rosenbrock, a([-1.2, 1.0]), 0.0, a([1.0, 1.0])),
        Problem(2, "Freudenstein and Roth", 2, 2, freudenstein_roth, a([0.5, -2.0]), 0.0,
                a([5.0, 4.0]), (48.98425367924,)),
        # 3 and 18 have twin minimisers (x1 <-> x2; (x1, x3) <-> (x5, x6)): x_min not unique.
        Problem(3, "Powell badly scaled", 2, 2, powell_badly_scaled, a([0.0, 1.0]), 0.0),
        Problem(4, "Brown badly scaled", 2, 3, brown_badly_scaled, a([1.0, 1.0]), 0.0,
                a([1e6, 2e-6])),
        Problem(5, "Beale", 2, 3, beale, a([1.0, 1.0]), 0.0, a([3.0, 0.5])),
        Problem(6, "Jennrich and Sampson", 2, 10, _fix(jennrich_sampson, m=10), a([0.3, 0.4]),
                124.362182355615, np.full(2, 0.2578252136703641)),
        Problem(7, "Helical valley", 3, 3, helical_valley, a([-1.0, 0.0, 0.0]), 0.0,
                a([1.0, 0.0, 0.0])),
        Problem(8, "Bard", 3, 15, bard, a([1.0, 1.0, 1.0]), 8.21487730658e-3,
                local_minima=(17.4286933333,)),
        Problem(9, "Gaussian", 3, 15, gaussian, a([0.4, 1.0, 0.0]), 1.12793276962e-8),
        Problem(10, "Meyer", 3, 16, meyer, a([0.02, 4000.0, 250.0]), 87.9458551706),
        Problem(11, "Gulf research and development", 3, 99, _fix(gulf, m=99),
                a([5.0, 2.5, 0.15]), 0.0, a([50.0, 25.0, 1.5])),
        Problem(12, "Box three-dimensional", 3, 10, _fix(box_3d, m=10), a([0.0, 10.0, 20.0]),
                0.0),
        Problem(13, "Powell singular", 4, 4, powell_singular, a([3.0, -1.0, 0.0, 1.0]), 0.0,
                np.zeros(4)),
        Problem(14, "Wood", 4, 6, wood, a([-3.0, -1.0, -3.0, -1.0]), 0.0, np.ones(4)),
        Problem(15, "Kowalik and Osborne", 4, 11, kowalik_osborne,
                a([0.25, 0.39, 0.415, 0.39]), 3.07505603849e-4, local_minima=(1.02734e-3,)),
        Problem(16, "Brown and Dennis", 4, 20, _fix(brown_dennis, m=20),
                a([25.0, 5.0, -5.0, -1.0]), 85822.2016264),
        Problem(17, "Osborne 1", 5, 33, osborne1, a([0.5, 1.5, -1.0, 0.01, 0.02]),
                5.46489469748e-5),
        Problem(18, "Biggs EXP6", 6, 13, _fix(biggs_exp6, m=13), a([1.0, 2, 1, 1, 1, 1]), 0.0,
                None, (5.65565e-3,)),
        Problem(19, "Osborne 2", 11, 65, osborne2,
                a([1.3, 0.65, 0.65, 0.7, 0.6, 3, 5, 7, 2, 4.5, 5.5]), 4.01377362935e-2),
        Problem(20, "Watson", 9, 31, watson, np.zeros(9), 1.39976013809e-6),
        Problem(21, "Extended Rosenbrock", n, n, rosenbrock, np.tile([-1.2, 1.0], n // 2), 0.0,
                np.ones(n)),
        Problem(22, "Extended Powell singular", 12, 12, powell_singular,
                np.tile([3.0, -1.0, 0.0, 1.0], 3), 0.0, np.zeros(12)),
        Problem(23, "Penalty I", n, n + 1, penalty1, _i(n), 7.08765146709e-5),
        Problem(24, "Penalty II", n, 2 * n, penalty2, np.full(n, 0.5), 2.93660537457e-4),
        Problem(25, "Variably dimensioned", n, n + 2, variably_dimensioned, 1 - _i(n) / n, 0.0,
                np.ones(n)),
        Problem(26, "Trigonometric", n, n, trigonometric, np.full(n, 1 / n), 0.0),
        Problem(27, "Brown almost-linear", n, n, brown_almost_linear, np.full(n, 0.5), 0.0,
                local_minima=(1.0,)),
        Problem(28, "Discrete boundary value", n, n, discrete_boundary_value, t * (t - 1), 0.0),
        Problem(29, "Discrete integral equation", n, n, discrete_integral_equation,
                t * (t - 1), 0.0),
        Problem(30, "Broyden tridiagonal", n, n, broyden_tridiagonal, -np.ones(n), 0.0),
        Problem(31, "Broyden banded", n, n, broyden_banded, -np.ones(n), 0.0),
        Problem(32, "Linear function - full rank", 5, 10, _fix(linear_full_rank, m=10),
                np.ones(5), 5.0, -np.ones(5)),
        Problem(33, "Linear function - rank 1", 5, 10, _fix(linear_rank1, m=10), np.ones(5),
                10 * 9 / (2 * 21)),
        Problem(34, "Linear function - rank 1 with zero columns and rows", 5, 10,
                _fix(linear_rank1, m=10, zero=True), np.ones(5), (100 + 30 - 6) / (2 * 17)),
        Problem(35, "Chebyquad", 8, 8, _fix(chebyquad, m=8), np.arange(1.0, 9) / 9,
                3.51687372568e-3),
    ]
