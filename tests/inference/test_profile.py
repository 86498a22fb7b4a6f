"""Profile-likelihood intervals against independent root-finding; open ends, failed fits, a
better optimum found on the way; single == batch."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import special, stats
from scipy import optimize
from scipy import stats as scipy_stats

import jaxmle as jm

# The search stops at |r - r*| <= 1e-7 on the signed root r = sqrt(2 drop), which moves an
# end by about 1e-7 standard errors; relative to the end itself that is below 1e-7.
END_RTOL = 1e-7
HALF_CHI2 = scipy_stats.chi2.ppf(0.95, 1) / 2


def _roots(drop, estimate, below, above):
    """Both solutions of ``drop(c) = chi2_1(0.95) / 2`` around ``estimate`` (brentq)."""
    equation = lambda c: drop(c) - HALF_CHI2
    return (optimize.brentq(equation, below, estimate, xtol=1e-14, rtol=1e-15),
            optimize.brentq(equation, estimate, above, xtol=1e-14, rtol=1e-15))


def test_exponential_rate_equals_the_exact_likelihood_ratio_interval():
    x = np.random.default_rng(0).exponential(0.5, size=40)
    fit = jm.fit(jm.models.exponential, None, x)
    prof = jm.profile(fit, x)
    n, total = len(x), x.sum()
    rate = n / total
    loglik = lambda r: n * np.log(r) - r * total
    lower, upper = _roots(lambda r: loglik(rate) - loglik(r), rate, 1e-6 * rate, 100 * rate)
    np.testing.assert_allclose([prof.lower["rate"], prof.upper["rate"]], [lower, upper],
                               rtol=END_RTOL)
    assert not (prof.lower_open["rate"] or prof.upper_open["rate"] or prof.better)


def test_normal_profiles_match_root_finding_and_sigma_is_asymmetric():
    x = np.random.default_rng(1).normal(1.0, 2.0, size=30)
    fit = jm.fit(jm.models.normal, None, x)
    prof = jm.profile(fit, x)
    n, mean, sd = len(x), x.mean(), x.std()
    # Profiles with the other parameter maximised out in closed form.
    drop_sigma = lambda s: n * np.log(s / sd) + n * sd**2 / (2 * s**2) - n / 2
    drop_mu = lambda m: n / 2 * np.log(np.mean((x - m) ** 2) / sd**2)
    sigma_ends = _roots(drop_sigma, sd, 1e-3 * sd, 10 * sd)
    mu_ends = _roots(drop_mu, mean, mean - 10 * sd, mean + 10 * sd)
    np.testing.assert_allclose([prof.lower["sigma"], prof.upper["sigma"]], sigma_ends, rtol=END_RTOL)
    np.testing.assert_allclose([prof.lower["mu"], prof.upper["mu"]], mu_ends, rtol=END_RTOL)
    # sigma's interval is longer above the estimate than below; Wald's is symmetric.
    assert prof.upper["sigma"] - sd > 1.2 * (sd - prof.lower["sigma"])


def _bimodal(params, centers):
    """A log-likelihood with two modes in ``a`` (heights 0.45 : 0.55) and a shallow valley
    between them (1.2 log-likelihood units, less than chi2_1(0.95) / 2 = 1.92)."""
    a = special.logsumexp(jnp.log(jnp.array([0.45, 0.55])) + stats.norm.logpdf(params["a"], centers, 0.6))
    return a + stats.norm.logpdf(params["b"], params["a"], 1.0)


def test_a_profile_that_finds_a_better_optimum_reports_it_instead_of_intervals():
    centers = np.array([-1.0, 1.0])
    local = jm.fit(_bimodal, {"a": -1.2, "b": 0.0}, centers)
    assert local.converged and local.params["a"] < 0  # the lower mode
    prof = jm.profile(local, centers)
    assert prof.better and prof.better_loglik > local.loglik
    assert np.isnan(prof.lower["a"]) and np.isnan(prof.upper["b"])
    refit = jm.fit(_bimodal, prof.better_params, centers)
    best = jm.fit(_bimodal, {"a": 1.2, "b": 0.0}, centers)
    assert refit.converged
    np.testing.assert_allclose(refit.loglik, best.loglik, rtol=1e-12)
    assert refit.loglik > local.loglik + 0.1


@pytest.mark.heavy
def test_open_end_and_failed_fit_are_flagged_not_invented():
    # Student-t data with n = 100: the profile of df flattens towards the Normal
    # likelihood, 0.55 units below the maximum, so the interval is open above.
    x = np.random.default_rng(0).standard_t(8.0, size=100)
    fit = jm.fit(jm.models.student_t, None, x)
    assert fit.converged
    prof = jm.profile(fit, x, parameters=["df", "loc"])
    assert prof.upper_open["df"] and prof.upper["df"] == np.inf
    assert not prof.lower_open["df"] and 1.0 < prof.lower["df"] < fit.params["df"]
    assert prof.lower["loc"] < fit.params["loc"] < prof.upper["loc"]
    assert np.isnan(prof.lower["scale"]) and not prof.failed["scale"]  # not asked for

    # This sample's tails are light: df runs off to infinity, a fit at no optimum.
    receding = jm.fit(jm.models.student_t, None, np.random.default_rng(2).standard_t(8.0, size=100))
    assert receding.status == jm.Status.BOUNDARY
    prof = jm.profile(receding, np.random.default_rng(2).standard_t(8.0, size=100),
                      parameters=["df", "loc"])  # the plan above: no second compilation
    assert prof.failed["df"] and prof.failed["loc"] and all(np.isnan(v) for v in prof.lower.values())


@pytest.mark.heavy
def test_batch_equals_single_profiles():
    X = np.random.default_rng(3).normal(1.0, 2.0, size=(6, 30))
    X[4] = np.nan  # a failed dataset in the batch changes nobody else's intervals
    fits = jm.fit_batch(jm.models.normal, None, X)
    batch = jm.profile(fits, X)
    assert batch.lower["sigma"].shape == (6,) and batch.better.shape == (6,)
    assert batch.failed["mu"][4] and np.isnan(batch.upper["mu"][4])
    for b in (0, 5):
        single = jm.profile(jm.fit(jm.models.normal, None, X[b]), X[b])
        for key in ("mu", "sigma"):
            np.testing.assert_allclose(batch.lower[key][b], single.lower[key], rtol=1e-10)
            np.testing.assert_allclose(batch.upper[key][b], single.upper[key], rtol=1e-10)


def test_bad_requests_raise_clear_errors():
    x = np.random.default_rng(4).choice(3, size=50).astype(float)
    model = jm.models.categorical(3)
    fit = jm.fit(model, None, x)
    with pytest.raises(ValueError, match="cannot profile .*probs.*reparameterise"):
        jm.profile(fit, x, parameters="probs")
    with pytest.raises(ValueError, match="nothing to profile"):
        jm.profile(fit, x)
    with pytest.raises(ValueError, match="unknown parameters"):
        jm.profile(fit, x, parameters="p")
    with pytest.raises(ValueError, match="level"):
        jm.profile(fit, x, level=1.5)
