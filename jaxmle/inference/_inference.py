"""Inference from fitted models: the likelihood-ratio test and the delta method.

Both accept a single ``Fit`` or a batched one (then every output has the batch axis).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxmle.core import _precision
from jaxmle.core._fit import Fit


@_precision.public
def lr_test(restricted: Fit, full: Fit):
    """Likelihood-ratio test of a restricted model nested in a full one.

    ``statistic = 2 (loglik_full - loglik_restricted)``, asymptotically chi-squared with
    ``df = n_params(full) - n_params(restricted)`` under the restriction (Wilks 1938).
    Where either fit did not converge the statistic and p-value are NaN.

    Returns:
        ``(statistic, df, pvalue)``; arrays with the batch axis for batched fits.

    Raises:
        ValueError: if the full model does not have more free parameters.

    Example:
        >>> import numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).gamma(3.0, 1.0, size=300)
        >>> gamma = lambda p, x: stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])
        >>> full = jm.fit(gamma, {"shape": 1.0, "rate": 1.0}, x, constraints=jm.positive)
        >>> exponential = jm.fit(lambda p, x: gamma({"shape": 1.0, "rate": p["rate"]}, x),
        ...                      {"rate": 1.0}, x, constraints=jm.positive)
        >>> statistic, df, pvalue = jm.lr_test(exponential, full)
        >>> df, bool(pvalue < 1e-10)
        (1, True)
    """
    df = full.n_params - restricted.n_params
    if df <= 0:
        raise ValueError("lr_test(restricted, full): the full model must have more free parameters "
                         f"than the restricted one, got {full.n_params} and {restricted.n_params}")
    ok = full.converged & restricted.converged
    statistic = jnp.where(ok, 2.0 * (full.loglik - restricted.loglik), jnp.nan)
    pvalue = jax.scipy.stats.chi2.sf(statistic, df)
    return jax.device_get(statistic), df, jax.device_get(pvalue)


@_precision.public
def delta_method(fn: Callable, fit: Fit):
    """Estimate and standard error of a smooth function of the parameters.

    ``se = sqrt(diag(J cov J'))`` with ``J`` the Jacobian of ``fn`` at the estimate (exact,
    by forward-mode autodiff). ``fn(params)`` may return any pytree of arrays.

    Returns:
        ``(value, se)``, two pytrees shaped like ``fn(params)`` (with the batch axis for
        batched fits).

    Example:
        >>> import numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).exponential(2.0, size=400)
        >>> f = jm.fit(lambda p, x: stats.expon.logpdf(x, scale=1 / p["rate"]), {"rate": 1.0},
        ...            x, constraints=jm.positive)
        >>> mean, se = jm.delta_method(lambda p: 1 / p["rate"], f)   # the mean, 1 / rate
        >>> bool(np.isclose(mean, x.mean())), bool(np.isclose(se, x.mean() / np.sqrt(400)))
        (True, True)
    """
    def one(params, cov):
        flat, unravel = ravel_pytree(params)

        def flat_fn(vector):
            return ravel_pytree(fn(unravel(vector)))[0]

        value = fn(params)
        _, unravel_value = ravel_pytree(value)
        jacobian = jax.jacfwd(flat_fn)(flat)
        se = jnp.sqrt(jnp.diag(jacobian @ cov @ jacobian.T))
        return value, unravel_value(se)

    result = jax.vmap(one)(fit.params, fit.cov) if fit.batch_shape else one(fit.params, fit.cov)
    return jax.device_get(result)
