"""The optimisation and regression tutorials (examples/gradient_ascent.py,
logistic_separation.py, linear_regression.py, shrinkage.py) in a small mode, checked against
independent computations (numpy closed forms, scipy root finding, statsmodels), with their
plots written to ``tmp_path``.

Tolerances: Newton/BFGS estimates ESTIMATE_RTOL, optax estimates OPTAX_RTOL, standard
errors SE_RTOL (see conftest). A log-likelihood evaluated at estimates that agree to
ESTIMATE_RTOL differs only to second order (the gradient vanishes there), so it is compared
to LOGLIK_RTOL, which leaves room for float64 summation over a few hundred terms.
Monte-Carlo quantities are compared within 4 Monte-Carlo standard errors (derived at each
test), so a fixed seed passes for a reason, not by luck.
"""

import math
import sys

import numpy as np
import pytest
import statsmodels.api as sm
from conftest import ESTIMATE_RTOL, OPTAX_RTOL, SE_RTOL, load_example
from scipy import optimize, special, stats

import jaxmle as jm

LOGLIK_RTOL = 1e-10


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 0, path


def test_gradient_ascent(tmp_path):
    obs, cap = 10_000, 2_000
    r = load_example("gradient_ascent").main(obs=obs, numpy_max_iter=cap, out=tmp_path)
    x = r["x"]
    assert x.shape == (obs,)
    closed = np.array([x.mean(), x.std()])  # sample mean, biased sd
    rows = r["rows"]
    for name, rtol in (("jaxmle newton", ESTIMATE_RTOL), ("jaxmle optax.sgd(0.5)", OPTAX_RTOL),
                       ("jaxmle optax.adam(0.1)", OPTAX_RTOL)):
        row = rows[name]
        assert row["converged"] and row["first_s"] > 0 and row["steady_s"] > 0, name
        np.testing.assert_allclose([row["mu"], row["sigma"]], closed, rtol=rtol, err_msg=name)
    assert rows["jaxmle newton"]["n_iter"] < 30

    # The numpy loop is deterministic: it starts at (0, 1), stops by its own rule before the
    # cap (the mean log-likelihood changed by < 1e-6 in its last step, not before), and that
    # loose rule leaves it far from the closed form (compare Newton's 1e-8 above).
    baseline = rows["numpy loop"]
    path = baseline["path"]
    np.testing.assert_array_equal(path[0], [0.0, 1.0])
    assert baseline["converged"] and baseline["n_iter"] == len(path) - 1 < cap
    mean_loglik = [stats.norm.logpdf(x, mu, sigma).mean() for mu, sigma in path[-3:]]
    assert abs(mean_loglik[2] - mean_loglik[1]) < 1e-6 <= abs(mean_loglik[1] - mean_loglik[0])
    np.testing.assert_allclose([baseline["mu"], baseline["sigma"]], path[-1], rtol=0)
    errors = np.abs(path[-1] - closed)
    np.testing.assert_allclose([baseline["error_mu"], baseline["error_sigma"]], errors,
                               rtol=1e-12)
    assert errors[0] > 1e-3  # about 0.017 with these numbers: 10^5 x Newton's error
    assert_png(tmp_path / "gradient_ascent.png")


def _logistic_loglik(beta, X, y):
    eta = X @ beta
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def test_logistic_regression_and_separation(tmp_path):
    r = load_example("logistic_separation").main(obs=500, out=tmp_path)
    X, y, fit = r["X"], r["y"], r["fit"]
    reference = sm.Logit(y, X).fit(disp=0, tol=1e-12)
    assert fit.converged
    np.testing.assert_allclose(fit.params["beta"], reference.params, rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose(fit.se["beta"], reference.bse, rtol=SE_RTOL)
    np.testing.assert_allclose(fit.loglik, reference.llf, rtol=LOGLIK_RTOL)
    np.testing.assert_allclose(fit.loglik, _logistic_loglik(reference.params, X, y),
                               rtol=LOGLIK_RTOL)
    np.testing.assert_allclose(r["statsmodels"]["params"], reference.params, rtol=1e-12)

    # Separation: y is 1 exactly above the threshold; the fit is flagged (README: BOUNDARY,
    # "estimate on the boundary or at infinity (separation)") with a likelihood near its
    # supremum 0 and a huge slope.
    x, separated_y, separated = X[:, 1], r["separated_y"], r["separated"]
    np.testing.assert_array_equal(separated_y, x > 0.1)
    assert not separated.converged
    assert separated.status == jm.Status.BOUNDARY
    assert -1e-6 < separated.loglik < 0 and separated.params["beta"][1] > 100

    # Profile log-likelihood of the slope: for each fixed slope the score in the intercept,
    # sum(y - expit(a + slope x)), is decreasing in a; its root from scipy's brentq is the
    # profile maximiser. The profile rises monotonically towards 0.
    slopes, profile = r["slopes"], r["profile"]
    assert profile.converged.all()
    intercepts = np.array([
        optimize.brentq(lambda a, b=b: np.sum(separated_y - special.expit(a + b * x)),
                        -1e3, 1e3, xtol=1e-14, rtol=4 * np.finfo(float).eps)
        for b in slopes])
    np.testing.assert_allclose(profile.params["intercept"], intercepts, rtol=ESTIMATE_RTOL)
    design = np.column_stack([np.ones_like(x), x])
    expected = [_logistic_loglik(np.array([a, b]), design, separated_y)
                for a, b in zip(intercepts, slopes)]
    np.testing.assert_allclose(profile.loglik, expected, rtol=LOGLIK_RTOL)
    assert np.all(np.diff(profile.loglik) > 0) and np.all(profile.loglik < 0)
    assert_png(tmp_path / "logistic_separation.png")


def test_logistic_without_statsmodels_or_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.api", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = load_example("logistic_separation").main(obs=500, out=tmp_path)
    out = capsys.readouterr().out
    assert "statsmodels is not installed: comparison skipped" in out
    assert "matplotlib is not installed" in out and "status BOUNDARY" in out
    assert r["statsmodels"] is None and r["fit"].converged
    assert not list(tmp_path.iterdir())


def test_linear_regression(tmp_path):
    r = load_example("linear_regression").main(obs=200, out=tmp_path)
    X, y, fit = r["X"], r["y"], r["fit"]
    n, p = X.shape
    assert fit.converged and fit.n_iter > 0  # started from beta = 0, sigma = 1
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    rss = np.sum((y - X @ beta) ** 2)
    np.testing.assert_allclose(fit.params["beta"], beta, rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose(fit.params["sigma"] ** 2, rss / n, rtol=ESTIMATE_RTOL)
    sigma = math.sqrt(rss / n)
    np.testing.assert_allclose(fit.se["beta"], sigma * np.sqrt(np.diag(np.linalg.inv(X.T @ X))),
                               rtol=SE_RTOL)
    np.testing.assert_allclose(fit.se["sigma"], sigma / math.sqrt(2 * n), rtol=SE_RTOL)
    # statsmodels' OLS uses RSS / (n - p): its SEs are the MLE's times sqrt(n / (n - p)).
    ols = sm.OLS(y, X).fit()
    np.testing.assert_allclose(r["ols_se"], ols.bse, rtol=1e-12)
    np.testing.assert_allclose(ols.bse / fit.se["beta"], math.sqrt(n / (n - p)), rtol=SE_RTOL)
    np.testing.assert_allclose(fit.loglik, ols.llf, rtol=LOGLIK_RTOL)

    (X1, y1), line = r["line_data"], r["line_fit"]
    assert line.converged
    slope, intercept = np.polyfit(X1[:, 1], y1, 1)
    np.testing.assert_allclose(line.params["beta"], [intercept, slope], rtol=ESTIMATE_RTOL)
    assert_png(tmp_path / "linear_regression.png")


@pytest.mark.heavy
def test_shrinkage(tmp_path):
    sizes, datasets = (10, 100, 1_000), 1_000
    module = load_example("shrinkage")
    r = module.main(sizes=sizes, datasets=datasets, out=tmp_path)
    mu, sigma = module.TRUTH["mu"], module.TRUTH["sigma"]
    z = stats.norm.ppf(0.975)
    for row, n in zip(r["rows"], sizes):
        x, fits = row["x"], row["fits"]
        assert x.shape == (datasets, n) and fits.converged.all()
        # The batch against the closed form, dataset by dataset.
        mean, sd = x.mean(axis=1), x.std(axis=1)
        np.testing.assert_allclose(fits.params["mu"], mean, rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(fits.params["sigma"], sd, rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(fits.se["mu"], sd / math.sqrt(n), rtol=SE_RTOL)
        np.testing.assert_allclose(fits.se["sigma"], sd / math.sqrt(2 * n), rtol=SE_RTOL)
        np.testing.assert_allclose(row["rmse_mu"], np.sqrt(np.mean((mean - mu) ** 2)), rtol=1e-7)
        np.testing.assert_allclose(row["rmse_sigma"], np.sqrt(np.mean((sd - sigma) ** 2)),
                                   rtol=1e-7)
        covered = np.abs(mean - mu) < z * sd / math.sqrt(n)
        np.testing.assert_allclose(row["coverage_mu"], covered.mean(), rtol=0)
        # mu_hat ~ N(mu, sigma^2 / n) exactly, so D n RMSE^2 / sigma^2 ~ chi^2_D (mean D,
        # SD sqrt(2 D)): within 4 SDs.
        statistic = datasets * n * row["rmse_mu"] ** 2 / sigma**2
        assert abs(statistic - datasets) < 4 * math.sqrt(2 * datasets), (n, statistic)

    # Slope of log RMSE on log n: log RMSE has Monte-Carlo SD ~ 1/sqrt(2 D) = 0.022, so the
    # least-squares slope over log n = log 10, 100, 1000 has SD 0.022 / (log 100 sqrt 2)
    # = 0.007; sigma_hat's small-n bias (RMSE 4.5% above sigma / sqrt(2 n) at n = 10) moves
    # its slope by about -0.01. +/-0.1 is therefore a safe band around -1/2.
    for name, slope in r["slopes"].items():
        assert abs(slope + 0.5) < 0.1, (name, slope)
    # Wald coverage at the largest n: within 4 Monte-Carlo SEs, sqrt(0.95 0.05 / D) = 0.0069
    # (the z-for-t and skewness effects are below 0.001 at n = 1000).
    largest = r["rows"][-1]
    coverage_se = math.sqrt(0.95 * 0.05 / datasets)
    np.testing.assert_allclose(r["coverage_se"], coverage_se, rtol=1e-12)
    for name in ("mu", "sigma"):
        assert abs(largest[f"coverage_{name}"] - 0.95) < 4 * coverage_se, name
        # mean SE / empirical SD: the SD of D estimates is itself off by ~1/sqrt(2 D) = 0.022.
        assert abs(largest[f"se_ratio_{name}"] - 1) < 4 / math.sqrt(2 * datasets), name
    assert_png(tmp_path / "shrinkage.png")
