"""Censored and truncated durations: ``jm.censored(model, truncated=False)``.

A censored model's data is ``(x, observed)``: ``observed`` is 1 where ``x`` is the exact
value and 0 where it is right-censored (the true value exceeds ``x``). Its per-observation
log-likelihood is ``observed * log f(x) + (1 - observed) * log S(x)`` with ``S`` the survival
function. With ``truncated=True`` the data is ``(x, observed, entry)`` and each term is
also conditioned on exceeding ``entry`` (left truncation, delayed entry):
minus ``log S(entry)``, which is 0 at ``entry = 0`` for the positive models. Klein &
Moeschberger, *Survival Analysis* (2nd ed., 2003), section 3.5 (likelihoods for censored and
truncated data).

The log-survival functions are computed in log space, never as ``log(1 - cdf)`` (which is
``log 0`` once the cdf rounds to 1, about 8 standard deviations out for a normal):

* exponential ``-rate x`` and Weibull ``-(x / scale)^k``, exact;
* normal and log-normal ``log Phi(-z)`` by ``log_ndtr``;
* gamma ``log Q(a, rate x)``, the regularised upper incomplete gamma function, by
  ``log_upper_gamma``: the series of ``P = 1 - Q`` below ``x = a + 1`` and the continued
  fraction of ``Q`` above it, both summed in log space (Press et al., *Numerical Recipes*,
  3rd ed., section 6.2).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special, stats

from jaxmle import models
from jaxmle.core._constraints import positive

# Terms of the series e^-x sum_n x^(a+n) / Gamma(a+n+1) (used for x < a + 1): the last
# term relative to the sum is below 1e-17 up to a shape of about 800.
SERIES_TERMS = 256
# Depth of the continued fraction (used for x >= a + 1), evaluated from its tail: at most
# about 60 levels are needed at a = 100, x = a + 1, fewer further out.
FRACTION_DEPTH = 160

_EULER_GAMMA = 0.5772156649015329


def _log1mexp(log_p):
    """``log(1 - exp(log_p))`` for ``log_p <= 0``, accurate at both ends (Maechler 2012,
    "Accurately computing log(1 - exp(-|a|))")."""
    return jnp.where(log_p > -jnp.log(2.0), jnp.log(-jnp.expm1(log_p)),
                     jnp.log1p(-jnp.exp(log_p)))


def _log_lower_series(a, x):
    """``log P(a, x)`` from ``P = e^-x sum_n x^(a+n) / Gamma(a+n+1)``, for ``x < a + 1``."""
    n = jnp.arange(SERIES_TERMS, dtype=x.dtype)
    log_x = jnp.log(x)[..., None]
    terms = (a[..., None] + n) * log_x - special.gammaln(a[..., None] + n + 1.0)
    return special.logsumexp(terms, axis=-1) - x


def _log_upper_fraction(a, x):
    """``log Q(a, x)`` from its continued fraction, for ``x >= a + 1``:
    ``Q = e^-x x^a / Gamma(a) / (b0 + c1 / (b1 + c2 / (b2 + ...)))`` with
    ``b_j = x + 2 j + 1 - a`` and ``c_j = -j (j - a)``, evaluated from level
    ``FRACTION_DEPTH`` up."""

    def level(i, tail):
        j = FRACTION_DEPTH - i
        return -j * (j - a) / (x + 2.0 * j + 1.0 - a + tail)

    tail = jax.lax.fori_loop(0, FRACTION_DEPTH, level, jnp.zeros_like(x))
    return a * jnp.log(x) - x - special.gammaln(a) - jnp.log(x + 1.0 - a + tail)


def log_upper_gamma(a, x):
    """``log Q(a, x)``, the log of the regularised upper incomplete gamma function.

    ``Q(a, x) = Gamma(a, x) / Gamma(a)`` is the survival function of a Gamma(a, 1) variable
    at ``x``. Accurate to about 1e-13 relative for shapes ``a`` in [0.1, 100] and ``x`` in
    [1e-3, 1e3], including the far tail where ``Q`` underflows (``log Q(0.1, 1000)`` is
    about -1007); differentiable in both arguments (JAX derives through the sums).

    Args:
        a: shape, > 0 (any shape broadcasting with ``x``).
        x: argument, > 0.

    Returns:
        ``log Q(a, x)``, broadcast shape of ``a`` and ``x``.

    Example:
        >>> import numpy as np
        >>> from scipy import stats
        >>> from jaxmle.survival._survival import log_upper_gamma
        >>> value = float(log_upper_gamma(np.float64(2.5), np.float64(40.0)))
        >>> bool(np.isclose(value, stats.gamma.logsf(40.0, 2.5), rtol=1e-12))
        True
    """
    a, x = jnp.broadcast_arrays(jnp.asarray(a, jnp.result_type(float)),
                                jnp.asarray(x, jnp.result_type(float)))
    series = x < a + 1.0
    # Each branch sees an argument inside its own range (the other's is a placeholder), so
    # neither forms a NaN that the unselected side of the where would carry into gradients.
    lower = _log1mexp(_log_lower_series(a, jnp.where(series, x, a)))
    upper = _log_upper_fraction(a, jnp.where(series, a + 1.0, x))
    return jnp.where(series, lower, upper)


# ----- the models: log-density and log-survival of each ready model ----------------


def _exponential_logsf(params, x):
    return -params["rate"] * x


def _weibull_logsf(params, x):
    return -jnp.exp(params["shape"] * (jnp.log(x) - jnp.log(params["scale"])))


def _gamma_logsf(params, x):
    return log_upper_gamma(params["shape"], params["rate"] * x)


def _normal_logsf(params, x):
    return special.log_ndtr((params["mu"] - x) / params["sigma"])


def _lognormal_logsf(params, x):
    return special.log_ndtr((params["mu"] - jnp.log(x)) / params["sigma"])


def _weights(observed, x):
    """Weights for means over the exact observations; all observations when fewer than 2
    are exact (a start, not an estimate)."""
    events = jnp.sum(observed)
    return jnp.where(events >= 2.0, observed, jnp.ones_like(x)), events


def _weighted_moments(values, weights):
    mean = jnp.sum(weights * values) / jnp.sum(weights)
    var = jnp.sum(weights * (values - mean) ** 2) / jnp.sum(weights)
    return mean, jnp.sqrt(var)


def _exposure(x, entry, power=1.0):
    """``sum (x^p - entry^p)``: the time at risk (p = 1), or its Weibull analogue."""
    return jnp.sum(x ** power - entry ** power)


def _events(observed):
    # At least half an event, so that an all-censored dataset still has a finite start.
    return jnp.maximum(jnp.sum(observed), 0.5)


def _exponential_start(x, observed, entry):
    return {"rate": _events(observed) / _exposure(x, entry)}


def _weibull_start(x, observed, entry):
    # Shape from the spread of log x over the exact values (log x has standard deviation
    # pi / (k sqrt 6)); the scale then maximises the likelihood at that shape.
    weights, _ = _weights(observed, x)
    _, spread = _weighted_moments(jnp.log(x), weights)
    k = jnp.pi / (jnp.sqrt(6.0) * jnp.maximum(spread, 1e-3))
    scale = (_exposure(x, entry, k) / _events(observed)) ** (1.0 / k)
    return {"shape": k, "scale": scale}


def _gamma_start(x, observed, entry):
    # Shape from the moments of the exact values; the rate from the exponential MLE.
    weights, _ = _weights(observed, x)
    mean, sd = _weighted_moments(x, weights)
    shape = jnp.clip((mean / jnp.maximum(sd, 1e-12 * mean)) ** 2, 1e-2, 1e3)
    return {"shape": shape, "rate": shape * _events(observed) / _exposure(x, entry)}


def _normal_start(x, observed, entry):
    weights, _ = _weights(observed, x)
    mu, sigma = _weighted_moments(x, weights)
    return {"mu": mu, "sigma": jnp.maximum(sigma, 1e-3 * jnp.maximum(jnp.abs(mu), 1.0))}


def _lognormal_start(x, observed, entry):
    return _normal_start(jnp.log(x), observed, entry)


@dataclasses.dataclass(frozen=True)
class _Family:
    logsf: object
    start: object
    positive: bool   # durations must be > 0


_FAMILIES = {
    "exponential": _Family(_exponential_logsf, _exponential_start, True),
    "weibull": _Family(_weibull_logsf, _weibull_start, True),
    "gamma": _Family(_gamma_logsf, _gamma_start, True),
    "lognormal": _Family(_lognormal_logsf, _lognormal_start, True),
    "normal": _Family(_normal_logsf, _normal_start, False),
}


# The ready models that ``censored`` takes, by name.
CENSORABLE = tuple(_FAMILIES)


def _unpack(data, truncated: bool):
    if truncated:
        x, observed, entry = data
    else:
        (x, observed), entry = data, None
    return x, observed, entry


def _check_interval(data, mask, *, name: str, positive_values: bool) -> None:
    """Checks of interval-censored data ``(lower, upper)`` (host arrays)."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"interval-censored {name} takes data (lower, upper), got "
                         f"{type(data).__name__}: each value lies in [lower, upper] (equal for "
                         "an exact value, upper = inf right-censored)")
    lower, upper = (np.asarray(leaf) for leaf in data)
    if lower.shape != upper.shape:
        raise ValueError(f"interval-censored {name}: lower {lower.shape} and upper "
                         f"{upper.shape} must have the same shape")
    keep = np.ones(lower.shape, bool)
    if mask is not None and np.shape(mask) == keep.shape:
        keep = np.asarray(mask, bool)
    lower, upper = lower[keep], upper[keep]
    if (upper < lower).any():
        raise ValueError(f"interval-censored {name}: upper must be >= lower, got "
                         f"{int((upper < lower).sum())} rows with upper < lower")
    if np.isposinf(lower).any() or np.isneginf(upper).any():
        raise ValueError(f"interval-censored {name}: lower must be finite or -inf and upper "
                         "finite or +inf")
    if positive_values and ((lower < 0).any() or (upper <= 0).any()):
        raise ValueError(f"interval-censored {name}: the values are positive: lower must be "
                         ">= 0 (0 for left-censored) and upper > 0")


def _check(data, mask, *, name: str, truncated: bool, positive_values: bool) -> None:
    """Structural and support checks of censored data (host arrays), before any tracing."""
    layout = "(x, observed, entry)" if truncated else "(x, observed)"
    if not isinstance(data, (tuple, list)) or len(data) != (3 if truncated else 2):
        got = (f"a {type(data).__name__} of {len(data)}" if isinstance(data, (tuple, list))
               else f"{type(data).__name__}")
        raise ValueError(f"censored {name} takes data {layout}, got {got}: pass the values "
                         "together with their event indicators (1 exact, 0 right-censored)"
                         + (" and entry times" if truncated else ""))
    arrays = [np.asarray(leaf) for leaf in data]
    names = ["x", "observed", "entry"][:len(arrays)]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise ValueError(f"censored {name}: {', '.join(names)} must have the same shape, got "
                         + ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays)))
    keep = np.ones(arrays[0].shape, bool)
    if mask is not None and np.shape(mask) == keep.shape:
        keep = np.asarray(mask, bool)
    x, observed = arrays[0][keep], arrays[1][keep]
    bad = ~((observed == 0) | (observed == 1))
    if bad.any():
        raise ValueError(f"censored {name}: observed must be 1 (exact) or 0 (right-censored), "
                         f"got {np.unique(observed[bad])[:5].tolist()}")
    if positive_values and (x <= 0).any():
        raise ValueError(f"censored {name}: durations x must be > 0, got {int((x <= 0).sum())} "
                         f"values <= 0 (smallest {x.min()})")
    if truncated:
        entry = arrays[2][keep]
        if positive_values and (entry < 0).any():
            raise ValueError(f"censored {name}: entry times must be >= 0, got "
                             f"{int((entry < 0).sum())} negative")
        if (entry > x).any():
            raise ValueError(f"censored {name}: entry must not exceed x (an observation enters "
                             f"before its event or censoring), got {int((entry > x).sum())} rows "
                             "with entry > x")


def censored(model, truncated: bool = False, *, interval: bool = False) -> models.ReadyModel:
    """The model of right-censored (optionally left-truncated) observations of ``model``.

    Data ``(x, observed)`` of shape ``(n,)`` each (``(B, n)`` in ``fit_batch``): ``x`` the
    durations (or values), ``observed`` 1 where ``x`` is exact and 0 where it is
    right-censored. Per-observation terms ``observed * logpdf(x) + (1 - observed) *
    logsf(x)``. With ``truncated=True`` the data is ``(x, observed, entry)`` and each term
    also subtracts ``logsf(entry)`` (the observation is seen only because it exceeded
    ``entry``; ``entry = 0`` means no truncation for the positive models).

    The result is a ready model (``init=None`` uses a start that accounts for censoring:
    the exponential MLE ``events / time at risk`` for rates and scales, moments of the
    exact values for shapes); its parameters are those of ``model``. The censored
    exponential also has its closed-form MLE ``rate = sum(observed) / sum(x - entry)``.

    Args:
        model: one of ``jm.models.exponential``, ``weibull``, ``gamma``, ``lognormal``,
            ``normal``.
        truncated: data with entry times (delayed entry).
        interval: interval-censored data ``(lower, upper)`` instead: each value is only known
            to lie in ``[lower, upper]``; ``lower == upper`` is an exact value (term
            ``logpdf``), ``upper = inf`` right-censored, ``lower = 0`` (``-inf`` for the
            normal) left-censored; otherwise the term is ``log(S(lower) - S(upper))``,
            computed as ``logsf(lower) + log(1 - exp(logsf(upper) - logsf(lower)))``.
            Not combined with ``truncated``.

    Returns:
        A ``jm.models.ReadyModel``; the same arguments give the same (equal) model, so
        fits share compiled programs.

    Raises:
        ValueError: ``model`` is not one of the supported ready models. Fitting it checks
            its data: ``observed`` not 0/1, ``x <= 0`` for a positive model, ``entry > x``,
            data that is not the tuple above.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> rng = np.random.default_rng(0)
        >>> life = rng.weibull(1.5, size=300) * 10.0          # shape 1.5, scale 10
        >>> limit = rng.uniform(5.0, 25.0, size=300)            # censoring times
        >>> x, observed = np.minimum(life, limit), (life <= limit).astype(float)
        >>> f = jm.fit(jm.censored(jm.models.weibull), None, (x, observed))
        >>> bool(f.converged), bool(abs(f.params["shape"] - 1.5) < 3 * f.se["shape"])
        (True, True)
    """
    name = getattr(model, "name", None)
    if not isinstance(model, models.ReadyModel) or name not in _FAMILIES or \
            getattr(models, name) is not model:
        raise ValueError(f"censored() takes one of the ready models "
                         f"{['jm.models.' + n for n in _FAMILIES]}, got {model!r:.80}")
    if interval and truncated:
        raise ValueError("censored(): interval=True and truncated=True cannot be combined")
    if interval:
        return _interval_censored(name)
    return _censored(name, bool(truncated))


@functools.lru_cache(maxsize=None)
def _interval_censored(name: str) -> models.ReadyModel:
    base, family = getattr(models, name), _FAMILIES[name]

    def log_density(params, data):
        lower, upper = data
        exact = lower == upper
        right = jnp.isposinf(upper)
        left = (lower <= 0) if family.positive else jnp.isneginf(lower)
        # Placeholders inside the support where a bound is open or unused, so that no inf
        # or NaN reaches the derivatives of the branches the where drops.
        finite_lower = jnp.where(left, jnp.where(right, 1.0, upper), lower)
        finite_upper = jnp.where(right | exact, finite_lower + 1.0, upper)
        low = jnp.where(left, 0.0, family.logsf(params, jnp.where(left, finite_upper, lower)))
        high = family.logsf(params, finite_upper)
        # S(lower) - S(upper) > 0 for lower < upper; its log from the log-survivals.
        between = low + _log1mexp(jnp.minimum(high - low, 0.0))
        exact_term = base.log_density(params, finite_lower)
        right_term = jnp.where(left, 0.0, low)  # (0, inf): no information
        return jnp.where(exact, exact_term, jnp.where(right, right_term, between))

    def start(data):
        lower, upper = data
        # Midpoints of closed intervals, lower bounds of open ones (right-censored).
        right = jnp.isposinf(upper)
        value = jnp.where(right, lower, 0.5 * (lower + jnp.where(right, lower, upper)))
        if family.positive:
            value = jnp.maximum(value, 0.5 * jnp.where(right, lower, upper))
            value = jnp.where(value > 0, value, 1.0)
        else:
            value = jnp.where(jnp.isneginf(lower), jnp.where(right, 0.0, upper), value)
        observed = (~right).astype(value.dtype)
        return family.start(value, observed, jnp.zeros_like(value))

    check = functools.partial(_check_interval, name=name, positive_values=family.positive)
    return models._ready(
        f"censored({name}, interval)", log_density, start, base.constraints, None,
        f"{base.parameters}; data (lower, upper)", check=check)


@functools.lru_cache(maxsize=None)
def _censored(name: str, truncated: bool) -> models.ReadyModel:
    base, family = getattr(models, name), _FAMILIES[name]

    def log_density(params, data):
        x, observed, entry = _unpack(data, truncated)
        terms = observed * base.log_density(params, x) + (1.0 - observed) * family.logsf(params, x)
        if not truncated:
            return terms
        if family.positive:
            # entry = 0 contributes 0; the placeholder keeps log 0 out of the derivatives.
            entered = entry > 0
            return terms - jnp.where(entered, family.logsf(params, jnp.where(entered, entry, 1.0)),
                                     0.0)
        return terms - family.logsf(params, entry)

    def start(data):
        x, observed, entry = _unpack(data, truncated)
        return family.start(x, observed, jnp.zeros_like(x) if entry is None else entry)

    closed_form = closed_form_se = None
    if name == "exponential":
        def closed_form(data):
            x, observed, entry = _unpack(data, truncated)
            exposure = jnp.sum(x) - (0.0 if entry is None else jnp.sum(entry))
            return {"rate": jnp.sum(observed) / exposure}

        def closed_form_se(data):
            # Observed information at the MLE: events / rate^2.
            return {"rate": closed_form(data)["rate"] / jnp.sqrt(jnp.sum(data[1]))}

    check = functools.partial(_check, name=name, truncated=truncated,
                              positive_values=family.positive)
    layout = "(x, observed, entry)" if truncated else "(x, observed)"
    return models._ready(
        f"censored({name}{', truncated' if truncated else ''})", log_density, start,
        base.constraints, closed_form, f"{base.parameters}; data {layout}",
        closed_form_se=closed_form_se, check=check)
