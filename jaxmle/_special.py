"""Special functions for the ready models, in forms that keep their digits where a
likelihood's supremum lies at a parameter's infinity.

``gammaln(a + x) - gammaln(a)`` loses ``eps * gammaln(a)`` to cancellation: at the Student-t's
``df = 1e7`` the log-density was off by 4e-9 per observation (jax's ``stats.t.logpdf``
against 50-digit arithmetic), at ``1e11`` by 2e-4, so the likelihood of light-tailed data,
which rises towards the Normal's as ``df`` grows, turned to noise long before it levelled
off, and a fit ran on to "gains" that were rounding. The negative binomial approaching the
Poisson (``size -> infinity``) cancels the same way.

``softplus`` carries its derivative as a rule of its own: the rule of ``jnp.logaddexp``,
differentiated twice for a Hessian, evaluates more exponentials per observation than the
sigmoid and its ``s (1 - s)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy import special

STIRLING_FROM = 100.0  # below, gammaln directly; from here, Stirling's series
# Stirling's series for gammaln(z) - ((z - 1/2) log z - z + log(2 pi) / 2): coefficients of
# z^-1, z^-3, z^-5, z^-7 (Abramowitz & Stegun 6.1.41); the next term is below 1e-21 here.
_STIRLING = (1.0 / 12.0, -1.0 / 360.0, 1.0 / 1260.0, -1.0 / 1680.0)


def _stirling_remainder(z):
    w = 1.0 / (z * z)
    series = _STIRLING[-1]
    for c in _STIRLING[-2::-1]:
        series = c + w * series
    return series / z


def log_gamma_ratio(a, x):
    """``gammaln(a + x) - gammaln(a) - x log(a)`` for ``a > 0``, ``x >= 0`` (broadcast).

    From ``a >= STIRLING_FROM`` by Stirling's series, as ``(a + x - 1/2) log1p(x / a) - x``
    plus the difference of the series' remainders: no term grows with ``a``, so the
    result is exact to rounding of itself (it tends to ``x (x - 1) / (2a)``).
    """
    large = a >= STIRLING_FROM
    big = jnp.where(large, a, STIRLING_FROM)    # the unselected branch stays finite,
    small = jnp.where(large, 1.0, a)            # so do its derivatives
    stirling = ((big + x - 0.5) * jnp.log1p(x / big) - x
                + _stirling_remainder(big + x) - _stirling_remainder(big))
    direct = special.gammaln(small + x) - special.gammaln(small) - x * jnp.log(small)
    return jnp.where(large, stirling, direct)


@jax.custom_jvp
def softplus(x):
    """``log(1 + exp(x))``, stable for any ``x``; its derivative is ``sigmoid(x)`` (whose own
    derivative is ``s (1 - s)``), fewer exponentials than ``jnp.logaddexp(0, x)``'s rule
    (module notes; ``docs/design.md``)."""
    return jnp.logaddexp(x, 0.0)


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (tangent,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * tangent
