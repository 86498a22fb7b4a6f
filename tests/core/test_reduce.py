"""Sufficient statistics found in the log-density's code (``_reduce``) and the reduced start
of large batches (``_solve.reduced_optima``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats
from jax.scipy.special import logsumexp

import jaxmle as jm
from jaxmle.core import _reduce
from conftest import ESTIMATE_RTOL, SE_RTOL

N = 600
RNG = np.random.default_rng(11)
_X = RNG.normal(size=(N, 3))
# Reduced and direct sums of 600 terms agree to rounding: values of O(1e3) to ~1e-12.
REDUCED_RTOL = 1e-10


def _gamma(p, x):
    return stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])


AFFINE = {
    "normal": (lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
               {"mu": 0.3, "sigma": 1.7}, RNG.normal(3, 2, N)),
    "normal by hand": (lambda p, x: -0.5 * ((x - p[0]) / p[1]) ** 2 - jnp.log(p[1]),
                       jnp.array([0.3, 1.5]), RNG.normal(3, 2, N)),
    "gamma at shape 1": (_gamma, {"shape": 1.0, "rate": 1.3}, RNG.gamma(2, 1 / 3, N)),
    "poisson": (lambda rate, x: stats.poisson.logpmf(x, rate), 2.5,
                RNG.poisson(3, N).astype(float)),
    "categorical": (lambda p, onehot: onehot @ jnp.log(p), jnp.array([0.1, 0.2, 0.3, 0.4]),
                    np.eye(4)[RNG.choice(4, size=N)]),
    "linear regression": (lambda p, d: stats.norm.logpdf(d[1], d[0] @ p["b"], p["s"]),
                          {"b": jnp.array([0.5, -0.5, 1.0]), "s": 1.3},
                          (_X, _X @ np.array([1.0, 2.0, 3.0]) + RNG.normal(size=N))),
}


def _reduction(log_density, params, data, n_obs=N):
    return _reduce.reduction(log_density, params, data, n_obs)


@pytest.mark.parametrize("name", list(AFFINE))
def test_reduced_loglik_gradient_and_hessian_equal_the_weighted_sum(name):
    log_density, params, data = AFFINE[name]
    reduction = _reduction(log_density, params, data)
    assert reduction is not None
    weights = jnp.asarray(RNG.integers(0, 3, N), float)  # zeros included
    stats_ = _reduce.statistics(reduction, params, data, weights)
    # One pass leaves a handful of numbers, at most the linear regression's 17 (its terms:
    # y'y, X'y twice, X'X and the weights' sum).
    assert sum(s.size for s in stats_) <= 17
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def derivatives(loglik):
        return jax.jit(jax.vmap(lambda v: (loglik(v), jax.grad(loglik)(v),
                                           jax.hessian(loglik)(v))))

    points = jnp.stack([flat, flat * 1.1])
    reduced = derivatives(lambda v: _reduce.loglik(reduction, unravel(v), stats_))
    direct = derivatives(lambda v: jnp.sum(weights * log_density(unravel(v), data)))
    for got, want in zip(reduced(points), direct(points)):
        np.testing.assert_allclose(got, want, rtol=REDUCED_RTOL, atol=1e-9)


def test_scalar_form_is_reduced_too():
    log_density, params, x = AFFINE["normal"]
    total = lambda p, x: jnp.sum(log_density(p, x))
    reduction = _reduction(total, params, x, n_obs=None)
    value = _reduce.loglik(reduction, params, _reduce.statistics(reduction, params, x, None))
    np.testing.assert_allclose(value, total(params, x), rtol=REDUCED_RTOL)


def test_observations_outside_the_support_make_the_reduced_loglik_minus_infinity():
    _, params, x = AFFINE["gamma at shape 1"]
    bad = x.copy()
    bad[5] = -1.0
    reduction = _reduction(_gamma, params, x)
    ones = jnp.ones(N)
    assert np.isfinite(_reduce.loglik(reduction, params,
                                      _reduce.statistics(reduction, params, x, ones)))
    assert _reduce.loglik(reduction, params, _reduce.statistics(reduction, params, bad, ones)) == -np.inf


@pytest.mark.parametrize("log_density, params, data", [
    (lambda b, d: d[1] * (d[0] @ b) - jnp.logaddexp(0.0, d[0] @ b), jnp.zeros(3),
     (_X, (RNG.uniform(size=N) < 0.5).astype(float))),
    (lambda p, x: jnp.log(p[0]) + (p[0] - 1) * jnp.log(x / p[1]) - (x / p[1]) ** p[0],
     jnp.array([1.5, 2.0]), RNG.weibull(1.5, N)),
    (lambda p, x: logsumexp(jnp.stack([stats.norm.logpdf(x, p[0], 1.0),
                                       stats.norm.logpdf(x, p[1], 1.0)]), axis=0),
     jnp.array([-1.0, 1.0]), RNG.normal(size=N)),
], ids=["logistic", "weibull", "mixture"])
def test_densities_that_are_not_affine_in_functions_of_the_data_have_no_reduction(
        log_density, params, data):
    assert _reduction(log_density, params, data) is None


@pytest.mark.heavy
def test_reduced_start_batches_converge_on_all_observations_in_at_most_one_iteration():
    # Ragged Normal datasets (padding holds values far outside the data) with weights.
    batch, n = 48, 320
    rng = np.random.default_rng(3)
    x = rng.normal(7.2, 2.8, size=(batch, n))
    lengths = rng.integers(40, n + 1, batch)
    mask = np.arange(n) < lengths[:, None]
    x = np.where(mask, x, 1e6)
    weights = rng.integers(1, 4, size=(batch, n)).astype(float)
    fits = jm.fit_batch(AFFINE["normal"][0], {"mu": 0.0, "sigma": 1.0}, x, mask=mask,
                        weights=weights, constraints={"sigma": jm.positive})
    assert fits.converged.all() and (fits.n_iter <= 1).all()
    w = np.where(mask, weights, 0.0)
    mean = (w * x).sum(1) / w.sum(1)
    sd = np.sqrt((w * (x - mean[:, None]) ** 2).sum(1) / w.sum(1))
    np.testing.assert_allclose(fits.params["mu"], mean, rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose(fits.params["sigma"], sd, rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose(fits.se["mu"], sd / np.sqrt(w.sum(1)), rtol=SE_RTOL)


@pytest.mark.heavy
def test_reduced_start_gives_the_fit_of_the_unreduced_path():
    # From (1, 1), where xlogy's derivative rule is not kept in the reduced form.
    x = np.random.default_rng(4).gamma(2.5, 1 / 1.7, size=(40, 256))
    constraints = {"shape": jm.positive, "rate": jm.positive}
    start = {"shape": 1.0, "rate": 1.0}
    fits = jm.fit_batch(_gamma, start, x, constraints=constraints)
    assert fits.converged.all() and (fits.n_iter <= 1).all()
    for b in range(0, 40, 13):  # single fits are never reduced
        single = jm.fit(_gamma, start, x[b], constraints=constraints)
        assert single.n_iter > 3
        for key in start:
            np.testing.assert_allclose(fits.params[key][b], single.params[key],
                                       rtol=ESTIMATE_RTOL)
            np.testing.assert_allclose(fits.se[key][b], single.se[key], rtol=SE_RTOL)
