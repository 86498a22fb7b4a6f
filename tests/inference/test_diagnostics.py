"""jm.diagnose and jm.refit: named weak directions, boundaries, separation, the
information-matrix discrepancy against closed forms, batch == single, refitting failures."""

import numpy as np
import pytest
from scipy import optimize

import jaxmle as jm
from conftest import ESTIMATE_RTOL

N = 40


def _separable(seed: int, overlap: bool):
    """Logistic data on x in [-1, 1]; y = 1 for x > 0, with two labels swapped if overlap."""
    x = np.sort(np.random.default_rng(seed).uniform(-1.0, 1.0, N))
    X = np.column_stack([np.ones(N), x])
    y = (x > 0).astype(float)
    if overlap:
        y[[N // 2 - 2, N // 2 + 1]] = 1.0 - y[[N // 2 - 2, N // 2 + 1]]
    return X, y


def test_separation_is_named_and_an_overlapping_sample_is_clean():
    data = _separable(0, overlap=False)
    fit = jm.fit(jm.models.logistic_regression, None, data)
    report = jm.diagnose(fit, data)
    assert fit.status == jm.Status.BOUNDARY
    assert report.separation and report.n_separated == N  # complete separation: all of them
    assert "beta[1]" in report.boundary_names()
    assert np.isnan(report.im_ratio)  # no optimum, no information-matrix comparison
    assert "separation: 40 observations" in report.summary()

    data = _separable(0, overlap=True)
    fit = jm.fit(jm.models.logistic_regression, None, data)
    report = jm.diagnose(fit, data)
    assert fit.converged and not report.separation and report.n_separated == 0
    assert report.boundary_names() == [] and report.weak_names() == []


def test_all_heads_is_a_boundary_estimate_of_p():
    flips = np.ones(3)
    fit = jm.fit(jm.models.bernoulli, None, flips)
    report = jm.diagnose(fit, flips)
    assert fit.status == jm.Status.BOUNDARY and report.boundary_names() == ["p"]
    assert report.separation and report.n_separated == 3


def test_near_collinear_regressors_are_named_weak_with_the_exact_eigenvalues():
    rng = np.random.default_rng(1)
    x1 = rng.normal(size=200)
    X = np.column_stack([np.ones(200), x1, x1 + 1e-4 * rng.normal(size=200), rng.normal(size=200)])
    y = X @ np.array([1.0, 0.5, 0.5, -1.0]) + rng.normal(size=200)
    fit = jm.fit(jm.models.linear_regression, None, (X, y))
    report = jm.diagnose(fit, (X, y))
    assert fit.converged and report.weak_names() == ["beta[1]", "beta[2]"]
    # Independent: at the MLE the information is block diagonal, X'X / sigma^2 for beta
    # and 2n for log sigma, so the correlation-form eigenvalues are those of X'X's
    # correlation form plus 1.
    xtx = X.T @ X
    d = np.sqrt(np.diag(xtx))
    expected = np.sort(np.append(np.linalg.eigvalsh(xtx / np.outer(d, d)), 1.0))
    np.testing.assert_allclose(report.eigenvalues, expected, rtol=1e-6, atol=1e-12)
    assert report.eigenvalues[0] < 1e-6 < report.eigenvalues[1]


def test_an_unidentified_pair_is_weak_and_singular():
    def sum_only(params, x):  # a and b enter only through a + b
        return -0.5 * (x - params["a"] - params["b"]) ** 2

    x = np.random.default_rng(2).normal(size=N)
    fit = jm.fit(sum_only, {"a": 0.0, "b": 0.0, "c": 0.0}, x)
    report = jm.diagnose(fit, x)
    assert fit.status == jm.Status.SINGULAR_HESSIAN
    assert report.weak_names() == ["a", "b", "c"]  # c does not enter at all: zero curvature
    assert not report.separation  # a density, not probability masses


def test_information_matrix_ratios_equal_their_closed_forms():
    # Normal model: sandwich/model SE is 1 for mu and sqrt((m4 / sigma^4 - 1) / 2) for
    # sigma (m4 the fourth central sample moment); im_ratio is the mean of the squares.
    for x, misspecified in ((np.random.default_rng(3).normal(1.0, 2.0, 5000), False),
                            (np.random.default_rng(3).standard_t(5.0, 5000), True)):
        fit = jm.fit(jm.models.normal, None, x)
        report = jm.diagnose(fit, x)
        centred = x - x.mean()
        kurtosis = np.mean(centred ** 4) / np.mean(centred ** 2) ** 2
        sigma_ratio = np.sqrt((kurtosis - 1.0) / 2.0)
        np.testing.assert_allclose(report.se_ratio["mu"], 1.0, rtol=1e-8)
        np.testing.assert_allclose(report.se_ratio["sigma"], sigma_ratio, rtol=1e-8)
        np.testing.assert_allclose(report.im_ratio, (1.0 + sigma_ratio ** 2) / 2.0, rtol=1e-8)
        # The ratio matches the engine's own robust and observed standard errors.
        robust = jm.fit(jm.models.normal, None, x, cov="robust")
        np.testing.assert_allclose(report.se_ratio["sigma"], robust.se["sigma"] / fit.se["sigma"],
                                   rtol=1e-8)
        # Normal data: kurtosis 3 +- 0.07 (sd at n = 5000), t(5) data: kurtosis 9 in theory.
        assert (report.se_ratio["sigma"] > 1.3) == misspecified


def _batch():
    datasets = [_separable(seed, overlap=seed != 2) for seed in range(5)]
    X = np.stack([d[0] for d in datasets])
    y = np.stack([d[1] for d in datasets])
    y[4, 0] = np.nan  # invalid data: a failure of its own
    return X, y


def test_batch_diagnosis_equals_single_ones_and_summarises_failures():
    data = _batch()
    fits = jm.fit_batch(jm.models.logistic_regression, None, data)
    batch = jm.diagnose(fits, data)
    assert batch.separation.tolist() == [False, False, True, False, False]
    for b in (0, 2):
        single_data = (data[0][b], data[1][b])
        single = jm.diagnose(jm.fit(jm.models.logistic_regression, None, single_data), single_data)
        one = batch[b]
        np.testing.assert_allclose(one.eigenvalues, single.eigenvalues, rtol=1e-8)
        assert one.boundary_names() == single.boundary_names()
        assert one.weak_names() == single.weak_names()
        assert bool(one.separation) == bool(single.separation)
        assert int(one.n_separated) == int(single.n_separated)
        np.testing.assert_allclose(one.im_ratio, single.im_ratio, rtol=1e-8)
    text = batch.summary()
    assert "converged 3/5" in text and "datasets with separation: 1" in text
    assert "BOUNDARY: datasets 2" in text and "INVALID_DATA: datasets 4" in text
    assert "datasets heading for a boundary, by parameter: " in text and "beta[1] 1" in text


@pytest.mark.heavy
def test_refit_replaces_only_failures_that_the_new_fit_fixes():
    # A Weibull model has no sufficient statistics: a batch iterates from its start (an
    # exponential batch would start at its reduced optimum and converge at once).
    X = np.random.default_rng(5).exponential(2.0, size=(6, N))
    X[3] = np.nan
    far = {"shape": 1.0, "scale": 50.0}
    first = jm.fit_batch(jm.models.weibull, far, X, max_iter=2)
    assert not first.converged.any()
    again = jm.refit(first, X, init=far)
    fixed = np.array([True, True, True, False, True, True])
    assert again.converged.tolist() == fixed.tolist()
    for b in np.flatnonzero(fixed):
        # The Weibull MLE: the shape k solves 1/k + mean(log x) = sum x^k log x / sum x^k,
        # the scale is mean(x^k)^(1/k).
        x = X[b]
        score = lambda k: 1 / k + np.log(x).mean() - (x**k * np.log(x)).sum() / (x**k).sum()
        shape = optimize.brentq(score, 0.1, 10.0, xtol=1e-14)
        np.testing.assert_allclose(again.params["shape"][b], shape, rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(again.params["scale"][b], (x**shape).mean() ** (1 / shape),
                                   rtol=ESTIMATE_RTOL)
    assert again.status[3] == jm.Status.INVALID_DATA  # refitting cannot fix NaN data
    assert again.method == "newton, refit newton" and len(again) == 6

    # Selected but already converged: kept unless the new fit is better; unselected untouched.
    which = np.array([True, False, False, False, False, False])
    full = jm.fit_batch(jm.models.exponential, None, X)
    kept = jm.refit(full, X, which=which, method="bfgs")
    np.testing.assert_array_equal(kept.params["rate"], full.params["rate"])


def test_refit_keeps_a_boundary_that_a_flat_point_would_pass_for_converged():
    # A negative binomial fitted to Poisson counts: size runs off to infinity (BOUNDARY).
    # BFGS from the start goes on to sizes of 1e13, where the likelihood is flat to
    # rounding and the certification passes; those fits gain nothing beyond the stopping
    # tolerance and must not replace the BOUNDARY (two did under a plain "converged and
    # the old did not" rule).
    K = np.random.default_rng(6).poisson(4.0, size=(24, 100)).astype(float)
    first = jm.fit_batch(jm.models.negative_binomial, None, K)
    again = jm.refit(first, K, method="bfgs")
    boundary = first.status == jm.Status.BOUNDARY
    assert boundary.sum() >= 10
    np.testing.assert_array_equal(again.status[boundary], first.status[boundary])
    np.testing.assert_array_equal(again.params["size"], first.params["size"])


@pytest.mark.heavy
def test_refit_with_several_starts_finds_the_better_mixture_optimum():
    # Three clusters: the start merges the middle one into the right component, a local
    # maximum (as in test_multistart); several starts find the global one.
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c, 0.6, s) for c, s in zip((-4, 0, 4), (100, 100, 140))])
    X = np.stack([x, x])
    model = jm.models.gaussian_mixture(2)
    local = {"weights": np.array([0.5, 0.5]), "mu": np.array([-4.0, 2.0]), "sigma": np.ones(2)}
    single = jm.fit_batch(model, local, X)
    assert single.converged.all()
    best = jm.refit(single, X, init=local, which=np.array([True, False]), starts=8)
    assert best.converged.all() and best.loglik[0] > single.loglik[0] + 20.0
    assert best.loglik[1] == single.loglik[1]  # not selected: untouched
    assert best.method == "newton, refit newton x8 starts"


def test_bad_requests_raise_clear_errors():
    X = np.random.default_rng(7).exponential(2.0, size=(3, N))
    fits = jm.fit_batch(jm.models.exponential, None, X)
    with pytest.raises(TypeError, match="batched jm.Fit"):
        jm.refit(fits[0], X[0])
    with pytest.raises(ValueError, match="boolean array of shape"):
        jm.refit(fits, X, which=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="fit has 3 datasets but data has 2"):
        jm.diagnose(fits, X[:2])
    with pytest.raises(TypeError, match="index the batched Diagnosis first"):
        jm.diagnose(fits, X).weak_names()
