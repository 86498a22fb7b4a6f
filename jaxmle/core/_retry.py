"""A second fit from the start where Newton fails: BFGS, then Newton from where BFGS stopped.

Newton's trust region follows its own path from a far start; where that path ends without
a certified optimum (SINGULAR_HESSIAN, STALLED, NONFINITE, MAX_ITER at the default cap, and
in a single fit BOUNDARY), another method's path from the same start often reaches one.
``jm.fit``, ``jm.fit_batch`` and ``jm.fit_stream`` then fit again: BFGS from the start (its
default cap), and Newton from BFGS's last iterate where that is finite, so the result is
Newton's, certified as any Newton fit. The second fit replaces the first only where it is
CONVERGED and its log-likelihood exceeds the first's by more than ``GAIN`` times the
stopping tolerance (relative): a first fit that reached a higher likelihood keeps it (Powell's
singular function: Newton reaches RSS 1e-30 at a singular Hessian, BFGS stops at 1e-21,
where its Hessian still looks definite), and so does one that stopped BOUNDARY near a
supremum at infinity.

On ``benchmarks/hard_problems.py`` (Moré-Garbow-Hillstrom and NIST StRD) the second fit
turns six of the eight starts that Newton missed and a peer solved into certified minima
(Beale from 10x and 100x, Bard from 10x with sigma free, Gaussian from 100x, Biggs EXP6
from 1x, NIST Hahn1 from its first start with sigma free); RESULTS.md has the tables.

Before that, a batch gives a dataset that Newton took to the batch's default cap (1,000
iterations, as a crawling dataset holds its chunk's lanes) a single fit's budget: it is
fitted again from its start with the single fit's cap (10,000), in a layout of such rows
alone (``full_budget``), so its lanes are its own, and its result is the one its single
fit's path reaches (a crawl along a curved valley: Meyer from 10x and 100x its start,
1,631 and 8,403 iterations). Only a fit that still fails then goes on to the second fit,
where such a dataset, whose long path is a single fit's, has BOUNDARY retried as a
single fit does (Beale from 10x its start: Newton's path runs off along a valley, 1,500
iterations, and the second fit reaches the minimum).

A call whose fits all converge costs nothing more. Where one fails, the BFGS stage is a
program of its own, compiled on the first failure for the shapes, also where the retry
cannot help; a batch's Newton stage reruns the batch's own compiled solve from the BFGS
ends (the failed rows in the batch's layout, the rest blocked). Batches do not retry
BOUNDARY: there it is mostly the data's own verdict (an estimate on the edge of the space,
separation in a logistic regression, a supremum at infinity), common in the simulations of
``calibrate`` and ``bootstrap``, where the retry cannot help and would cost every call a
BFGS fit of those rows and a pass of the Newton stage (``docs/performance.md`` has the
cost); the single fits of hard nonlinear problems, where Newton's path runs off along a
valley while a finite optimum lies elsewhere (Beale, Bard), do. ``n_iter`` of a replaced fit
counts the iterations of both of its stages.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxmle.core import _solve
from jaxmle.core._fit import Fit
from jaxmle.core._status import Status
from jaxmle.solvers import _optax_solver

PRELUDE = "bfgs"
PRELUDE_MAX_ITER = 500  # BFGS's default cap (``_engine.DEFAULT_MAX_ITER``)

# A first fit that ended so is fitted again; MAX_ITER only at the default cap (a cap the
# user chose is a budget the user asked for), BOUNDARY only in a single fit (below).
FAILED = (Status.NONFINITE, Status.STALLED, Status.SINGULAR_HESSIAN)
# The second fit must gain more than this many times the stopping tolerance (relative to
# the log-likelihood): a first fit that stopped on its way to a supremum at infinity
# (BOUNDARY) is within that tolerance of it, and a second fit that went on further, to a
# point where the likelihood is flat to rounding, passes the certification there (a
# negative binomial fitted to Poisson counts: 8e-13 relative, against a tolerance of 1e-10).
GAIN = 100.0


def applies(spec: _solve.FitSpec) -> bool:
    """Whether fits of ``spec`` are retried: Newton's."""
    return spec.solver.name == "newton"


def failed(status, default_cap: bool, boundary) -> np.ndarray:
    """Where a first fit's ``status`` (host array) calls for the second fit; ``boundary``
    (a bool, or one per dataset): where BOUNDARY does too."""
    status = np.asarray(status)
    codes = [int(code) for code in FAILED] + ([int(Status.MAX_ITER)] if default_cap else [])
    return np.isin(status, codes) | (np.asarray(boundary) & (status == int(Status.BOUNDARY)))


def prelude(spec: _solve.FitSpec) -> _solve.FitSpec:
    """The BFGS stage's spec: ``spec`` with BFGS and its default cap."""
    return dataclasses.replace(spec, solver=_optax_solver.from_method(PRELUDE),
                               max_iter=PRELUDE_MAX_ITER)


def newton_from_points(spec: _solve.FitSpec) -> _solve.FitSpec:
    """The Newton stage's spec: ``spec`` started from given points (no data-driven start)."""
    return dataclasses.replace(spec, init_fn=None)


def improves(first_loglik, second_status, second_loglik, gtol: float) -> np.ndarray:
    """Where a second fit (host arrays ``second_status``, ``second_loglik``) is better than
    a first one of log-likelihood ``first_loglik``: CONVERGED, and above the first by more
    than ``GAIN * gtol * max(|first_loglik|, 1)``, or the first's is not finite. Also the
    rule of ``jm.refit``."""
    first_loglik, second_loglik = np.asarray(first_loglik), np.asarray(second_loglik)
    margin = GAIN * gtol * np.maximum(np.abs(first_loglik), 1.0)
    gains = (second_loglik - first_loglik > margin) | ~np.isfinite(first_loglik)
    return (np.asarray(second_status) == int(Status.CONVERGED)) & gains


def replace_rows(fits: Fit, rows: np.ndarray, new: Fit) -> Fit:
    """A copy of the batched host ``fits`` whose datasets ``rows`` are those of ``new``
    (host arrays, ``len(rows)`` datasets, the same fields; its labels may differ)."""
    merged = jax.tree_util.tree_map(np.array, fits)
    for leaf, part in zip(jax.tree_util.tree_leaves(merged), jax.tree_util.tree_leaves(new)):
        leaf[rows] = part
    return merged


def single(fit: Fit, spec: _solve.FitSpec, init, *, default_cap: bool, fit_from) -> Fit:
    """``fit`` (host arrays), or its second fit where that is better (module notes).

    ``fit_from(spec, init)`` runs one fit of the call's data and returns it as host arrays.
    """
    if not (applies(spec) and failed(fit.status, default_cap, boundary=True)):
        return fit
    bfgs = fit_from(prelude(spec), init)
    if not all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(bfgs.params)):
        return fit
    second = fit_from(newton_from_points(spec), bfgs.params)
    if not improves(fit.loglik, second.status, second.loglik, spec.gtol):
        return fit
    return dataclasses.replace(second, n_iter=second.n_iter + bfgs.n_iter)


def full_budget(fits: Fit, spec: _solve.FitSpec, data, weights, mask, *, default_cap: bool,
                refit_rows) -> tuple[Fit, np.ndarray]:
    """``(fits, refitted)``: ``fits`` (host arrays, leading axis ``B``) with each dataset
    that Newton took to the batch's default cap fitted again from its start with a single
    fit's cap (module notes), and ``(B,)`` True on those datasets.
    ``refit_rows(data, weights, mask)`` so fits rows of the batch's inputs and returns
    host arrays."""
    refitted = (np.asarray(fits.status) == int(Status.MAX_ITER)) & (default_cap and applies(spec))
    if not refitted.any():
        return fits, refitted
    take = lambda tree: jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[refitted], tree)
    again = refit_rows(*take((data, weights, mask)))
    return replace_rows(fits, np.flatnonzero(refitted), again), refitted


def batch(fits: Fit, spec: _solve.FitSpec, data, weights, mask, *, default_cap: bool,
          bfgs_rows, newton_rows, as_single=False) -> Fit:
    """``fits`` (host arrays, leading axis ``B``) with each failed dataset's second fit
    taken where it is better (module notes).

    ``bfgs_rows(data, weights, mask)`` fits rows of the batch's inputs by BFGS from their
    starts; ``newton_rows(found, data, weights, mask)`` fits them by Newton from ``found``
    (``(R, k)`` unconstrained); both return host arrays. ``as_single``: ``(B,)`` True on
    datasets fitted with a single fit's budget (``full_budget``), whose BOUNDARY is
    retried as a single fit's is (False: none).
    """
    retried = failed(fits.status, default_cap, boundary=as_single) if applies(spec) else None
    if retried is None or not retried.any():
        return fits
    rows = np.flatnonzero(retried)
    take = lambda tree, at: jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[at], tree)
    inputs = take((data, weights, mask), rows)
    bfgs = bfgs_rows(*inputs)
    found = np.asarray(jax.vmap(spec.space.to_unconstrained)(bfgs.params))
    restarted = np.all(np.isfinite(found), axis=1)  # a non-finite BFGS end is no start
    if not restarted.any():
        return fits
    rows = rows[restarted]
    second = newton_rows(found[restarted], *take(inputs, restarted))
    second = dataclasses.replace(second, n_iter=second.n_iter + bfgs.n_iter[restarted])
    taken = improves(np.asarray(fits.loglik)[rows], second.status, second.loglik, spec.gtol)
    return replace_rows(fits, rows[taken], take(second, taken))
