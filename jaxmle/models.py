"""Ready models: classic distributions and regressions for ``jm.fit`` / ``jm.fit_batch``.

A ready model is a ``ReadyModel``, a ``jm.Model`` (per-observation log-density and
constraints) with a data-driven start, a simulator and, where one exists, the closed-form
MLE. Pass it in place of the log-density, with ``init=None`` for its start (or a start of
your own):

    >>> import numpy as np
    >>> import jaxmle as jm
    >>> x = np.random.default_rng(0).poisson(4.2, size=500)
    >>> f = jm.fit(jm.models.poisson, None, x)
    >>> bool(f.converged), bool(np.isclose(f.params["rate"], x.mean(), rtol=1e-9))
    (True, True)

Data conventions (one dataset; ``fit_batch`` adds a leading batch axis to every leaf):
``bernoulli`` y in {0, 1}; ``binomial`` a pair ``(successes, trials)``; ``geometric`` the
number of trials up to and including the first success (1, 2, ...); ``poisson`` counts;
``exponential``, ``lognormal`` positive values; ``categorical(k)`` codes 0 .. k-1;
``linear_regression``, ``logistic_regression`` (y in {0, 1}), ``poisson_regression`` (counts)
a pair ``(X, y)`` with ``X`` of shape ``(n, p)`` (include a column of ones for an intercept);
``gamma``, ``weibull`` positive values; ``beta`` values in (0, 1); ``negative_binomial``
counts; ``student_t``, ``gaussian_mixture(k)`` real values. Closed forms and starts are traceable functions of one dataset's
data (``jax.vmap`` them over a batch).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy import special, stats

from jaxmle._special import log_gamma_ratio, softplus
from jaxmle.core._constraints import ordered, positive, simplex, unit_interval
from jaxmle.core._model import Model

# Starts are kept this far inside the unit interval, so that data with all successes or
# all failures still give a finite start (the fit then reports BOUNDARY).
_INTERIOR = 1e-3


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ReadyModel(Model):
    """A ``jm.Model`` the engine can fit without further input.

    Attributes (besides ``log_density``, ``constraints`` and ``log_prior``):
        name: short name.
        start: ``start(data) -> params``, a data-driven starting point (traceable), used
            when a fit is given ``init=None``.
        closed_form: ``closed_form(data) -> params``, the exact MLE, or None.
        parameters: a line describing each parameter.
        closed_form_se: ``closed_form_se(data) -> se``, the standard errors from the inverse
            observed information at the closed-form MLE (the Cramer-Rao bound evaluated there),
            or None.
        simulate: ``simulate(key, params, n) -> data``, one dataset of ``n`` observations
            drawn from the model (``n`` static; ``jax.vmap`` over keys and params for many).
        check: ``check(data, mask)``, or None: structural checks of the host data (numpy
            leaves, one dataset or a batch; ``mask`` None or boolean, False on padding)
            that raise a clear ``ValueError`` before anything is traced.
    """

    name: str
    start: Callable
    closed_form: Callable | None
    parameters: str
    closed_form_se: Callable | None = None
    simulate: Callable | None = None
    check: Callable | None = None


def _floats(data):
    """Integer data (counts, codes, 0/1) as the working float dtype, so that the models work
    under JAX's strict dtype promotion too."""
    cast = lambda leaf: jnp.asarray(leaf).astype(jnp.result_type(float))
    return jax.tree_util.tree_map(cast, data)


def _on_floats(function):
    """``function(data)`` applied to float data; None stays None."""
    return None if function is None else (lambda data: function(_floats(data)))


def _ready(name, log_density, start, constraints, closed_form, parameters, *,
           closed_form_se=None, simulate=None, check=None) -> ReadyModel:
    """A ``ReadyModel`` whose functions see float data and whose simulator returns it."""
    return ReadyModel(
        lambda params, data: log_density(params, _floats(data)), constraints=constraints,
        name=name, start=_on_floats(start), closed_form=_on_floats(closed_form),
        parameters=parameters, closed_form_se=_on_floats(closed_form_se),
        simulate=None if simulate is None else (lambda key, params, n: _floats(
            simulate(key, jax.tree_util.tree_map(jnp.asarray, params), n))), check=check)


def _inside_unit(p):
    return jnp.clip(p, _INTERIOR, 1.0 - _INTERIOR)


def _proportion_se(p, count):
    return jnp.sqrt(p * (1.0 - p) / count)


def _design(key, n, p):
    """Covariates for simulated regressions: a column of ones, then ``p - 1`` standard normal
    columns; ``(n, p)``."""
    normal = jax.random.normal(key, (n, p - 1))
    return jnp.concatenate([jnp.ones((n, 1), normal.dtype), normal], axis=1)


def _regression_simulate(draw_response):
    """Simulator of ``(X, y)``: ``X`` from ``_design``, ``y = draw_response(key, X @ beta, params)``."""

    def simulate(key, params, n):
        design_key, response_key = jax.random.split(key)
        X = _design(design_key, n, params["beta"].shape[-1])
        return X, draw_response(response_key, X @ params["beta"], params)

    return simulate


# Each simulated binomial observation counts the successes in this many trials.
_SIMULATED_TRIALS = 10


def _bernoulli_log_density(params, y):
    return special.xlogy(y, params["p"]) + special.xlog1py(1.0 - y, -params["p"])


def _bernoulli_mle(y):
    return {"p": jnp.mean(y)}


bernoulli = _ready(
    "bernoulli", _bernoulli_log_density, lambda y: {"p": _inside_unit(jnp.mean(y))},
    {"p": unit_interval}, _bernoulli_mle, "p: success probability",
    closed_form_se=lambda y: {"p": _proportion_se(jnp.mean(y), y.shape[0])},
    simulate=lambda key, params, n: jax.random.bernoulli(key, params["p"], (n,)))


def _binomial_log_density(params, data):
    k, trials = data
    return (special.gammaln(trials + 1) - special.gammaln(k + 1) - special.gammaln(trials - k + 1)
            + special.xlogy(k, params["p"]) + special.xlog1py(trials - k, -params["p"]))


def _binomial_mle(data):
    k, trials = data
    return {"p": jnp.sum(k) / jnp.sum(trials)}


def _binomial_simulate(key, params, n):
    trials = jnp.full((n,), _SIMULATED_TRIALS)
    return jax.random.binomial(key, trials, params["p"]), trials


binomial = _ready(
    "binomial", _binomial_log_density, lambda data: {"p": _inside_unit(_binomial_mle(data)["p"])},
    {"p": unit_interval}, _binomial_mle, "p: success probability per trial",
    closed_form_se=lambda data: {"p": _proportion_se(_binomial_mle(data)["p"], jnp.sum(data[1]))},
    simulate=_binomial_simulate)


def _geometric_log_density(params, x):
    return jnp.log(params["p"]) + special.xlog1py(x - 1.0, -params["p"])


def _geometric_mle(x):
    return {"p": 1.0 / jnp.mean(x)}


def _geometric_se(x):
    # Observed information at the MLE: n / (p^2 (1 - p)).
    p = _geometric_mle(x)["p"]
    return {"p": p * jnp.sqrt((1.0 - p) / x.shape[0])}


geometric = _ready(
    "geometric", _geometric_log_density, lambda x: {"p": _inside_unit(_geometric_mle(x)["p"])},
    {"p": unit_interval}, _geometric_mle, "p: success probability per trial",
    closed_form_se=_geometric_se,
    simulate=lambda key, params, n: jax.random.geometric(key, params["p"], (n,)))


def _poisson_mle(x):
    return {"rate": jnp.mean(x)}


poisson = _ready(
    "poisson", lambda params, x: stats.poisson.logpmf(x, params["rate"]),
    lambda x: {"rate": jnp.maximum(jnp.mean(x), _INTERIOR)},
    {"rate": positive}, _poisson_mle, "rate: mean count",
    closed_form_se=lambda x: {"rate": jnp.sqrt(jnp.mean(x) / x.shape[0])},
    simulate=lambda key, params, n: jax.random.poisson(key, params["rate"], (n,)))


def _exponential_mle(x):
    return {"rate": 1.0 / jnp.mean(x)}


exponential = _ready(
    "exponential", lambda params, x: jnp.log(params["rate"]) - params["rate"] * x,
    _exponential_mle, {"rate": positive}, _exponential_mle, "rate: 1 / mean",
    closed_form_se=lambda x: {"rate": _exponential_mle(x)["rate"] / jnp.sqrt(x.shape[0])},
    simulate=lambda key, params, n: jax.random.exponential(key, (n,)) / params["rate"])


def _normal_mle(x):
    return {"mu": jnp.mean(x), "sigma": jnp.std(x)}


def _normal_se(x):
    n, sigma = x.shape[0], jnp.std(x)
    return {"mu": sigma / jnp.sqrt(n), "sigma": sigma / jnp.sqrt(2.0 * n)}


def _normal_simulate(key, params, n):
    return params["mu"] + params["sigma"] * jax.random.normal(key, (n,))


normal = _ready(
    "normal", lambda params, x: stats.norm.logpdf(x, params["mu"], params["sigma"]),
    _normal_mle, {"sigma": positive}, _normal_mle,
    "mu: mean; sigma: standard deviation (MLE: divides by n)",
    closed_form_se=_normal_se, simulate=_normal_simulate)


def _lognormal_log_density(params, x):
    log_x = jnp.log(x)
    return stats.norm.logpdf(log_x, params["mu"], params["sigma"]) - log_x


def _lognormal_mle(x):
    return _normal_mle(jnp.log(x))


lognormal = _ready(
    "lognormal", _lognormal_log_density, _lognormal_mle, {"sigma": positive}, _lognormal_mle,
    "mu, sigma: mean and standard deviation of log x",
    closed_form_se=lambda x: _normal_se(jnp.log(x)),
    simulate=lambda key, params, n: jnp.exp(_normal_simulate(key, params, n)))


def categorical(k: int) -> ReadyModel:
    """Codes 0 .. k-1 with probabilities ``probs`` on the simplex (one draw of a multinomial
    per observation); the MLE is the observed proportions. The same ``k`` gives the same
    Model (and reuses its compiled fits)."""
    if int(k) < 2:
        raise ValueError(f"categorical needs k >= 2 categories, got {k}")
    return _categorical(int(k))


@functools.lru_cache(maxsize=None)
def _categorical(k: int) -> ReadyModel:

    def indicators(x):
        return (x[:, None] == jnp.arange(k, dtype=x.dtype)).astype(jnp.result_type(float))

    def log_density(params, x):
        return indicators(x) @ jnp.log(params["probs"])

    def mle(x):
        return {"probs": jnp.mean(indicators(x), axis=0)}

    def start(x):
        counts = jnp.sum(indicators(x), axis=0)
        return {"probs": (counts + 0.5) / (x.shape[0] + 0.5 * k)}

    def se(x):
        # Multinomial covariance (diag(p) - p p') / n: each entry's SE is a proportion's.
        return {"probs": _proportion_se(mle(x)["probs"], x.shape[0])}

    def simulate(key, params, n):
        return jax.random.categorical(key, jnp.log(params["probs"]), shape=(n,))

    return _ready(f"categorical({k})", log_density, start, {"probs": simplex}, mle,
                  f"probs: probabilities of the {k} categories (simplex)",
                  closed_form_se=se, simulate=simulate)


def _linear_regression_log_density(params, data):
    X, y = data
    return stats.norm.logpdf(y, X @ params["beta"], params["sigma"])


def _linear_regression_mle(data):
    X, y = data
    beta = jnp.linalg.lstsq(X, y)[0]
    residual = y - X @ beta
    return {"beta": beta, "sigma": jnp.sqrt(jnp.mean(residual * residual))}


def _linear_regression_se(data):
    # The observed information at the MLE is block diagonal: X'X / sigma^2 and 2 n / sigma^2.
    X = data[0]
    sigma = _linear_regression_mle(data)["sigma"]
    diagonal = jnp.diag(jnp.linalg.inv(X.T @ X))
    return {"beta": sigma * jnp.sqrt(diagonal), "sigma": sigma / jnp.sqrt(2.0 * X.shape[0])}


linear_regression = _ready(
    "linear_regression", _linear_regression_log_density, _linear_regression_mle,
    {"sigma": positive}, _linear_regression_mle,
    "beta: coefficients of the columns of X; sigma: residual standard deviation (RSS / n)",
    closed_form_se=_linear_regression_se,
    simulate=_regression_simulate(
        lambda key, mean, params: mean + params["sigma"] * jax.random.normal(key, mean.shape)))


# ----- models without a closed-form MLE: data-driven starts from moments -------------


def _gamma_start(x):
    mean, var = jnp.mean(x), jnp.var(x)
    return {"shape": mean * mean / var, "rate": mean / var}


gamma = _ready(
    "gamma", lambda params, x: stats.gamma.logpdf(x, params["shape"], scale=1.0 / params["rate"]),
    _gamma_start, positive, None, "shape; rate = 1 / scale (method-of-moments start)",
    simulate=lambda key, params, n: jax.random.gamma(key, params["shape"], (n,)) / params["rate"])


def _beta_start(x):
    mean, var = jnp.mean(x), jnp.var(x)
    common = jnp.maximum(mean * (1.0 - mean) / var - 1.0, _INTERIOR)
    return {"a": mean * common, "b": (1.0 - mean) * common}


beta = _ready(
    "beta", lambda params, x: stats.beta.logpdf(x, params["a"], params["b"]), _beta_start,
    positive, None, "a, b: shape parameters (method-of-moments start)",
    simulate=lambda key, params, n: jax.random.beta(key, params["a"], params["b"], (n,)))


def _weibull_log_density(params, x):
    k, scale = params["shape"], params["scale"]
    log_z = jnp.log(x) - jnp.log(scale)
    # exp(k log z), not z ** k: XLA's CPU pow costs several times an exp and a log
    # (``docs/design.md``).
    return jnp.log(k / scale) + (k - 1.0) * log_z - jnp.exp(k * log_z)


def _weibull_start(x):
    # log x has standard deviation pi / (k sqrt 6) and mean log(scale) - euler_gamma / k.
    log_x = jnp.log(x)
    k = jnp.pi / (jnp.sqrt(6.0) * jnp.std(log_x))
    return {"shape": k, "scale": jnp.exp(jnp.mean(log_x) + 0.5772156649015329 / k)}


weibull = _ready(
    "weibull", _weibull_log_density, _weibull_start, positive, None,
    "shape k; scale (start from the moments of log x)",
    simulate=lambda key, params, n: jax.random.weibull_min(
        key, params["scale"], params["shape"], (n,)))


def _negative_binomial_log_density(params, x):
    # gammaln(x + size) - gammaln(size) + size log(size / (size + mean)) + x log(mean /
    # (size + mean)) - gammaln(x + 1), arranged so that no term grows with size: equidispersed
    # counts take size to infinity, where the density becomes the Poisson's (``_special``).
    mean, size = params["mean"], params["size"]
    return (log_gamma_ratio(size, x) - (size + x) * jnp.log1p(mean / size)
            + special.xlogy(x, mean) - special.gammaln(x + 1.0))


def _negative_binomial_start(x):
    mean, var = jnp.mean(x), jnp.var(x)
    # var = mean + mean^2 / size; without overdispersion start at a large size (near Poisson).
    return {"mean": jnp.maximum(mean, _INTERIOR),
            "size": jnp.where(var > mean * 1.01, mean * mean / (var - mean), 100.0)}


def _negative_binomial_simulate(key, params, n):
    # A Poisson count whose rate is gamma distributed with the given mean and shape ``size``.
    rate_key, count_key = jax.random.split(key)
    rate = jax.random.gamma(rate_key, params["size"], (n,)) * params["mean"] / params["size"]
    return jax.random.poisson(count_key, rate)


negative_binomial = _ready(
    "negative_binomial", _negative_binomial_log_density, _negative_binomial_start, positive, None,
    "mean; size (NB2: variance = mean + mean^2 / size; moments start)",
    simulate=_negative_binomial_simulate)


def _student_t_start(x):
    center = jnp.median(x)
    spread = 1.4826 * jnp.median(jnp.abs(x - center))
    return {"loc": center, "scale": spread, "df": jnp.asarray(5.0, spread.dtype)}


def _student_t_log_density(params, x):
    # stats.t.logpdf cancels gammaln((df + 1) / 2) - gammaln(df / 2) and loses the digits that
    # tell the Normal-looking data's likelihood rising as df -> infinity (``_special``).
    df, scale = params["df"], params["scale"]
    z = (x - params["loc"]) / scale
    return (log_gamma_ratio(0.5 * df, 0.5) - 0.5 * jnp.log(2.0 * jnp.pi) - jnp.log(scale)
            - 0.5 * (df + 1.0) * jnp.log1p(z * z / df))


student_t = _ready(
    "student_t", _student_t_log_density,
    _student_t_start, {"scale": positive, "df": positive}, None,
    "loc; scale; df: degrees of freedom (start: median, scaled MAD, df 5)",
    simulate=lambda key, params, n: params["loc"] + params["scale"] * jax.random.t(
        key, params["df"], (n,)))


def _logistic_regression_log_density(params, data):
    X, y = data
    eta = X @ params["beta"]
    return y * eta - softplus(eta)


logistic_regression = _ready(
    "logistic_regression", _logistic_regression_log_density,
    lambda data: {"beta": jnp.zeros(data[0].shape[-1], data[0].dtype)}, None, None,
    "beta: coefficients of the columns of X (log-odds); start 0",
    simulate=_regression_simulate(
        lambda key, eta, params: jax.random.bernoulli(key, jax.nn.sigmoid(eta))))


def _poisson_regression_log_density(params, data):
    X, y = data
    eta = X @ params["beta"]
    return y * eta - jnp.exp(eta) - special.gammaln(y + 1.0)


poisson_regression = _ready(
    "poisson_regression", _poisson_regression_log_density,
    lambda data: {"beta": jnp.zeros(data[0].shape[-1], data[0].dtype)}, None, None,
    "beta: coefficients of the columns of X (log link); start 0",
    simulate=_regression_simulate(lambda key, eta, params: jax.random.poisson(key, jnp.exp(eta))))



def gaussian_mixture(k: int) -> ReadyModel:
    """A mixture of ``k`` Normal components: ``weights`` on the simplex, means ``mu`` and
    standard deviations ``sigma``, each of shape ``(k,)``.

    Components are exchangeable, so the means are constrained increasing (``jm.ordered``): the
    label order is canonical and estimates of different datasets or starts are comparable.
    The likelihood has local optima and is unbounded as a ``sigma`` shrinks onto one
    observation; the start puts the means at the ``(j + 1/2) / k`` quantiles of the data with
    equal weights and a common ``sigma = sd(x) / k``. The same ``k`` gives the same Model.
    """
    if int(k) < 2:
        raise ValueError(f"gaussian_mixture needs k >= 2 components, got {k}")
    return _gaussian_mixture(int(k))


@functools.lru_cache(maxsize=None)
def _gaussian_mixture(k: int) -> ReadyModel:

    def log_density(params, x):
        joint = jnp.log(params["weights"]) + stats.norm.logpdf(
            x[:, None], params["mu"], params["sigma"])
        return special.logsumexp(joint, axis=-1)

    def start(x):
        spread = jnp.std(x)
        centers = jnp.quantile(x, (jnp.arange(k, dtype=x.dtype) + 0.5) / k)
        # Tied quantiles (discrete-looking data) would leave the ordered constraint's support.
        gaps = jnp.maximum(jnp.diff(centers), 1e-3 * spread)
        mu = jnp.concatenate([centers[:1], centers[0] + jnp.cumsum(gaps)])
        return {"weights": jnp.full(k, 1.0 / k, x.dtype), "mu": mu,
                "sigma": jnp.full(k, spread / k)}

    def simulate(key, params, n):
        label_key, noise_key = jax.random.split(key)
        labels = jax.random.categorical(label_key, jnp.log(params["weights"]), shape=(n,))
        return params["mu"][labels] + params["sigma"][labels] * jax.random.normal(noise_key, (n,))

    return _ready(f"gaussian_mixture({k})", log_density, start,
                  {"weights": simplex, "mu": ordered, "sigma": positive}, None,
                  f"weights: {k} mixing proportions (simplex); mu: increasing component means "
                  "(ordered); sigma: component standard deviations (start from quantiles)",
                  simulate=simulate)
