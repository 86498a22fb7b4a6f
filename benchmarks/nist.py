"""The NIST StRD nonlinear regression problems (all 27), in jax.numpy.

Data, both starting values, certified parameters, certified standard deviations and the
certified residual sum of squares are in ``benchmarks/nist/<Name>.txt`` (NIST's data are
public domain; see each file's header, and its ``# note`` lines for the few values that
are computed here rather than copied). Each ``mean(b, x)`` is NIST's model formula in
pure jax.numpy (no Python control flow on values: jit-, vmap- and grad-friendly); it
computes in float64 when called under ``jax.enable_x64(True)``. Nelson's model is for
log(y): its ``mean`` returns the model for log(y) and its ``response`` is log(y).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

import jax.numpy as jnp
import numpy as np

DATA_DIR = pathlib.Path(__file__).with_name("nist")

NAMES = ("Misra1a", "Chwirut2", "Chwirut1", "Lanczos3", "Gauss1", "Gauss2", "DanWood",
         "Misra1b", "Kirby2", "Hahn1", "Nelson", "MGH17", "Lanczos1", "Lanczos2", "Gauss3",
         "Misra1c", "Misra1d", "Roszman1", "ENSO", "MGH09", "Thurber", "BoxBOD", "Rat42",
         "MGH10", "Eckerle4", "Rat43", "Bennett5")
"""NIST's order: lower, then average, then higher difficulty."""


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One NIST StRD problem.

    ``x`` has shape (n,), or (n, 2) for Nelson; ``y`` is the observed response as NIST
    lists it and ``response`` what the residuals ``response - mean(b, x)`` use (log(y) for
    Nelson, y otherwise). ``starts`` are NIST's Start 1 and Start 2.
    """

    name: str
    difficulty: str
    model: str
    x: np.ndarray
    y: np.ndarray
    response: np.ndarray
    starts: tuple[np.ndarray, np.ndarray]
    certified: np.ndarray
    certified_sd: np.ndarray
    certified_rss: float
    mean: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _misra1a(b, x):
    return b[0] * (1 - jnp.exp(-b[1] * x))


def _chwirut(b, x):
    return jnp.exp(-b[0] * x) / (b[1] + b[2] * x)


def _lanczos(b, x):
    return b[0] * jnp.exp(-b[1] * x) + b[2] * jnp.exp(-b[3] * x) + b[4] * jnp.exp(-b[5] * x)


def _gauss(b, x):
    return (b[0] * jnp.exp(-b[1] * x) + b[2] * jnp.exp(-(x - b[3]) ** 2 / b[4] ** 2)
            + b[5] * jnp.exp(-(x - b[6]) ** 2 / b[7] ** 2))


def _danwood(b, x):
    return b[0] * x ** b[1]


def _misra1b(b, x):
    return b[0] * (1 - (1 + b[1] * x / 2) ** (-2))


def _kirby2(b, x):
    return (b[0] + b[1] * x + b[2] * x**2) / (1 + b[3] * x + b[4] * x**2)


def _cubic_ratio(b, x):
    return (b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3) / (1 + b[4] * x + b[5] * x**2
                                                             + b[6] * x**3)


def _nelson(b, x):
    return b[0] - b[1] * x[:, 0] * jnp.exp(-b[2] * x[:, 1])


def _mgh17(b, x):
    return b[0] + b[1] * jnp.exp(-x * b[3]) + b[2] * jnp.exp(-x * b[4])


def _misra1c(b, x):
    return b[0] * (1 - (1 + 2 * b[1] * x) ** (-0.5))


def _misra1d(b, x):
    return b[0] * b[1] * x * ((1 + b[1] * x) ** (-1))


def _roszman1(b, x):
    return b[0] - b[1] * x - jnp.arctan(b[2] / (x - b[3])) / jnp.pi


def _enso(b, x):
    w = 2 * jnp.pi * x
    return (b[0] + b[1] * jnp.cos(w / 12) + b[2] * jnp.sin(w / 12)
            + b[4] * jnp.cos(w / b[3]) + b[5] * jnp.sin(w / b[3])
            + b[7] * jnp.cos(w / b[6]) + b[8] * jnp.sin(w / b[6]))


def _mgh09(b, x):
    return b[0] * (x**2 + x * b[1]) / (x**2 + x * b[2] + b[3])


def _rat42(b, x):
    return b[0] / (1 + jnp.exp(b[1] - b[2] * x))


def _mgh10(b, x):
    return b[0] * jnp.exp(b[1] / (x + b[2]))


def _eckerle4(b, x):
    return (b[0] / b[1]) * jnp.exp(-0.5 * ((x - b[2]) / b[1]) ** 2)


def _rat43(b, x):
    return b[0] / ((1 + jnp.exp(b[1] - b[2] * x)) ** (1 / b[3]))


def _bennett5(b, x):
    return b[0] * (b[1] + x) ** (-1 / b[2])


MEANS = {"Misra1a": _misra1a, "Chwirut2": _chwirut, "Chwirut1": _chwirut,
         "Lanczos3": _lanczos, "Gauss1": _gauss, "Gauss2": _gauss, "DanWood": _danwood,
         "Misra1b": _misra1b, "Kirby2": _kirby2, "Hahn1": _cubic_ratio, "Nelson": _nelson,
         "MGH17": _mgh17, "Lanczos1": _lanczos, "Lanczos2": _lanczos, "Gauss3": _gauss,
         "Misra1c": _misra1c, "Misra1d": _misra1d, "Roszman1": _roszman1, "ENSO": _enso,
         "MGH09": _mgh09, "Thurber": _cubic_ratio, "BoxBOD": _misra1a, "Rat42": _rat42,
         "MGH10": _mgh10, "Eckerle4": _eckerle4, "Rat43": _rat43, "Bennett5": _bennett5}


def load(name: str) -> Problem:
    """Parse ``nist/<name>.txt``: keyword lines, then data rows (predictors, then y)."""
    fields, rows, model = {}, [], ""
    for line in (DATA_DIR / f"{name}.txt").read_text().splitlines():
        if line.startswith("# model:"):
            model = line.split(":", 1)[1].strip()
        if not line.strip() or line.startswith("#"):
            continue
        key, *values = line.split()
        if key[0].isalpha():
            fields[key] = values
        else:
            rows.append([float(v) for v in line.split()])
    data = np.array(rows)
    x = data[:, :-1] if data.shape[1] > 2 else data[:, 0]
    y = data[:, -1]

    def vector(key):
        return np.array([float(v) for v in fields[key]])

    return Problem(name=name, difficulty=fields["difficulty"][0], model=model, x=x, y=y,
                   response=np.log(y) if name == "Nelson" else y,
                   starts=(vector("start1"), vector("start2")), certified=vector("certified"),
                   certified_sd=vector("certified_sd"), certified_rss=float(fields["rss"][0]),
                   mean=MEANS[name])


def problems() -> list[Problem]:
    """All 27 problems in NIST's order."""
    return [load(name) for name in NAMES]
