"""``Fit``: the immutable, typed result of ``jm.fit`` / ``jm.fit_batch`` (a JAX pytree).

A batched fit is the same type with a leading batch axis ``B`` on every array field;
``fit[i]`` is one dataset's ``Fit`` and ``len(fit) == B``.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.batch._batched import Batched
from jaxmle.core import _summary
from jaxmle.core._model import Model
from jaxmle.core._status import Status
from jaxmle.tabular import _frames


@dataclasses.dataclass(frozen=True)
class Fit(Batched):
    """Result of a maximum-likelihood (or MAP) fit.

    Attributes:
        params: estimate, a pytree shaped like ``init`` (user's constrained coordinates).
        se: standard errors, same pytree; NaN when the information is singular.
        cov: ``(k, k)`` covariance in the order of ``jax.flatten_util.ravel_pytree(params)``
            (k counts every constrained entry; a simplex of m entries adds m rows).
        loglik: log-likelihood at the estimate (without the log-prior).
        status: ``Status`` code (int32) saying why the fit stopped.
        n_iter: iterations used on all observations (a single fit of 2^20 or more
            observations first iterates on a subsample for its start, a large batch of
            a model with sufficient statistics on those; see ``_solve``). 0 means the
            start passed the stopping test. A Newton fit fitted again after a failure
            (``core/_retry``) counts the iterations of its BFGS and Newton stages.
        grad_norm: max-norm of the objective's gradient in unconstrained coordinates.
        n_obs: number of (weighted, unmasked) observations; None for a scalar log-density.
        n_params: number of free parameters (a simplex of m entries has m - 1).
        names: a label for each entry of the flattened parameters (from the pytree paths).
        method: the solver's name.
        cov_kind: ``"observed"``, ``"opg"`` or ``"robust"``.
        model: the ``jm.Model`` that was fitted (log-density, constraints, log-prior); the
            tools that start from a fit (``jm.profile``, ``jm.bootstrap``, ``jm.diagnose``,
            ``jm.refit``) take it from here.
    """

    params: Any
    se: Any
    cov: jax.Array
    loglik: jax.Array
    status: jax.Array
    n_iter: jax.Array
    grad_norm: jax.Array
    n_obs: jax.Array | None
    n_params: int
    names: tuple[str, ...]
    method: str
    cov_kind: str
    model: Model | None = None

    # ----- derived values -------------------------------------------------------------
    @property
    def converged(self) -> jax.Array:
        """True where the stopping test passed with finite values and the fit is certified."""
        return self.status == Status.CONVERGED

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for a batched fit, ``()`` for a single one."""
        return tuple(np.shape(self.status))

    @property
    def aic(self):
        """Akaike information criterion ``2k - 2 loglik``."""
        return 2.0 * self.n_params - 2.0 * self.loglik

    @property
    def bic(self):
        """Bayesian information criterion ``k log(n) - 2 loglik`` (NaN when n is unknown)."""
        if self.n_obs is None:
            return self.loglik * np.nan
        log = np.log if isinstance(self.n_obs, (np.ndarray, np.generic)) else jnp.log
        return self.n_params * log(self.n_obs) - 2.0 * self.loglik

    def conf_int(self, level: float = 0.95):
        """Wald interval ``estimate -/+ z se`` with ``z = Phi^-1((1 + level) / 2)``.

        Returns:
            ``(lower, upper)``, two pytrees shaped like ``params``.
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
        z = statistics.NormalDist().inv_cdf(0.5 + 0.5 * level)
        lower = jax.tree_util.tree_map(lambda p, s: p - z * s, self.params, self.se)
        upper = jax.tree_util.tree_map(lambda p, s: p + z * s, self.params, self.se)
        return lower, upper

    def to_dataframe(self, level: float = 0.95):
        """A pandas DataFrame with one row per dataset (a single fit: one row).

        Columns: for each entry of ``names``, the estimate (named like the entry, e.g.
        ``mu`` or ``beta[0]``) and ``<name>_se``, ``<name>_lower``, ``<name>_upper`` (the
        Wald interval at ``level``); then ``loglik``, ``aic``, ``bic``, ``n_obs`` (NaN for
        a scalar log-density), ``n_iter``, ``converged`` and ``status`` (the ``Status``
        name). ``frame.attrs["level"]`` records the level.

        Raises:
            ImportError: pandas is not installed (``pip install 'jaxmle[pandas]'``).

        Example:
            >>> import numpy as np
            >>> import jaxmle as jm
            >>> x = np.random.default_rng(0).poisson(3.0, size=(2, 40))
            >>> frame = jm.fit_batch(jm.models.poisson, None, x).to_dataframe()
            >>> list(frame.columns[:4]), list(frame["status"])
            (['rate', 'rate_se', 'rate_lower', 'rate_upper'], ['CONVERGED', 'CONVERGED'])
        """
        return _frames.fit_frame(self, level)

    # ----- text -----------------------------------------------------------------------
    def __repr__(self) -> str:
        if self.batch_shape:
            converged = np.asarray(self.converged)
            return (f"Fit(batch of {converged.size}, method={self.method!r}, "
                    f"converged {converged.sum()}/{converged.size})")
        values = ", ".join(f"{name}={value:.6g}" for name, value in
                           zip(self.names, _summary.flat(self.params)))
        return (f"Fit({values}, loglik={float(self.loglik):.6g}, "
                f"status={Status(int(self.status)).name}, method={self.method!r})")

    def summary(self, level: float = 0.95) -> str:
        """A text table: name, estimate, se, z, p, Wald interval; then fit statistics.

        For a batched fit: converged fraction, status counts, and the spread of each
        estimate across datasets.
        """
        return _summary.batch_summary(self) if self.batch_shape else _summary.summary(self, level)


jax.tree_util.register_dataclass(
    Fit,
    data_fields=["params", "se", "cov", "loglik", "status", "n_iter", "grad_norm", "n_obs"],
    meta_fields=["n_params", "names", "method", "cov_kind", "model"])

