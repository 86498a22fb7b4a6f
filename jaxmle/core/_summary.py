"""Text tables for ``Fit.summary()``: one fit, or the overview of a batch of fits."""

from __future__ import annotations

import collections
import math

import jax
import numpy as np

from jaxmle.core._status import Status


def flat(tree) -> np.ndarray:
    """Host copy of a (single) parameter pytree, flattened in ``ravel_pytree`` order."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in leaves]) if leaves else np.zeros(0)


def flat_batch(tree, batch: int) -> np.ndarray:
    """Host copy of a batched parameter pytree as a ``(batch, n_flat)`` array."""
    leaves = jax.tree_util.tree_leaves(tree)
    return np.concatenate([np.asarray(leaf).reshape(batch, -1) for leaf in leaves], axis=1)


def _two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else math.nan


def summary(fit, level: float) -> str:
    """Coefficient table and fit statistics of a single ``Fit``."""
    estimate, se = flat(fit.params), flat(fit.se)
    lower, upper = (flat(bound) for bound in fit.conf_int(level))
    width = max([9] + [len(name) for name in fit.names])
    pct = f"{100 * level:g}%"
    header = (f"{'parameter':<{width}} {'estimate':>12} {'std.err':>11} {'z':>8} {'p':>9}"
              f" {pct + ' lower':>12} {pct + ' upper':>12}")
    rows = []
    for name, est, err, lo, hi in zip(fit.names, estimate, se, lower, upper):
        z = est / err if err > 0 else math.nan
        rows.append(f"{name:<{width}} {est:>12.6g} {err:>11.4g} {z:>8.3f} {_two_sided_p(z):>9.3g}"
                    f" {lo:>12.6g} {hi:>12.6g}")
    status = Status(int(fit.status))
    n_obs = "unknown" if fit.n_obs is None else f"{float(fit.n_obs):g}"
    rule = "-" * len(header)
    lines = [
        f"Maximum-likelihood fit ({fit.method}, cov={fit.cov_kind})",
        rule, header, rule, *rows, rule,
        f"log-likelihood {float(fit.loglik):.6f}   AIC {float(fit.aic):.4f}   BIC {float(fit.bic):.4f}",
        (f"n_obs {n_obs}   n_params {fit.n_params}   iterations {int(fit.n_iter)}   "
         f"max|gradient| {float(fit.grad_norm):.2e}"),
        f"status {status.name} (converged={bool(fit.converged)})",
    ]
    return "\n".join(lines)


def batch_summary(fit) -> str:
    """Converged fraction, status counts and the spread of each estimate across a batch."""
    batch = len(fit)
    status = np.asarray(fit.status)
    counts = collections.Counter(Status(int(code)).name for code in status)
    values = flat_batch(fit.params, batch)
    ok = status == Status.CONVERGED
    width = max([9] + [len(name) for name in fit.names])
    lines = [
        f"Batch of {batch} maximum-likelihood fits ({fit.method}, cov={fit.cov_kind})",
        f"converged {ok.sum()}/{batch} ({100 * ok.mean():.2f}%); status counts: "
        + ", ".join(f"{name} {count}" for name, count in counts.most_common()),
        f"iterations: median {np.median(np.asarray(fit.n_iter)):g}, max {np.asarray(fit.n_iter).max()}",
        "estimates over converged datasets:",
        f"{'parameter':<{width}} {'mean':>12} {'sd':>11} {'min':>12} {'median':>12} {'max':>12}",
    ]
    for name, column in zip(fit.names, values[ok].T if ok.any() else np.full((len(fit.names), 1), np.nan)):
        lines.append(f"{name:<{width}} {column.mean():>12.6g} {column.std():>11.4g} "
                     f"{column.min():>12.6g} {np.median(column):>12.6g} {column.max():>12.6g}")
    return "\n".join(lines)
