"""Censored and truncated likelihoods (``jm.censored``) against lifelines, scipy and closed
forms.

lifelines' parametric fitters maximise the same likelihoods with scipy's L-BFGS-B (after a
Nelder-Mead start), with the exact Hessian (autograd) for the standard errors. By default
L-BFGS-B stops when the loss changes by less than about 2e-9 relative, leaving estimates
within ~1e-5 of the optimum; the tests tighten its tolerances (``LIFELINES_OPTIONS``), and
then both agree to better than 1e-9.
"""

import numpy as np
import pytest
from scipy import optimize, special, stats

import jaxmle as jm
from jaxmle.survival._survival import log_upper_gamma

lifelines = pytest.importorskip("lifelines")
from lifelines import datasets  # noqa: E402

LIFELINES_OPTIONS = {"ftol": 1e-16, "gtol": 1e-12}
# With those options lifelines' estimates are within 6e-10 of ours (measured; its
# L-BFGS-B still stops first), its standard errors (exact Hessian at its estimate) too; the log-likelihood is
# second order in that distance.
PARAM_RTOL = 1e-9
SE_RTOL = 1e-9
LOGLIK_RTOL = 1e-12
# Our log Q against scipy: both accurate to a few ulps times the conditioning of log.
LOGSF_RTOL = 1e-12


def _waltons():
    frame = datasets.load_waltons()
    return frame["T"].to_numpy(float), frame["E"].to_numpy(float)


def _psychiatric():
    # Klein & Moeschberger's psychiatric patients: age at admission (entry) and age at death
    # or censoring (Age + T), the left-truncated example of lifelines' documentation.
    frame = datasets.load_psychiatric_patients()
    entry = frame["Age"].to_numpy(float)
    return entry + frame["T"].to_numpy(float), frame["C"].to_numpy(float), entry


# (lifelines fitter, our model, our parameters as functions of lifelines' fitted values)
FITTERS = {
    "weibull": ("WeibullFitter", jm.models.weibull,
                lambda f: {"scale": (f.lambda_, f.summary.loc["lambda_", "se(coef)"]),
                           "shape": (f.rho_, f.summary.loc["rho_", "se(coef)"])}),
    "lognormal": ("LogNormalFitter", jm.models.lognormal,
                  lambda f: {"mu": (f.mu_, f.summary.loc["mu_", "se(coef)"]),
                             "sigma": (f.sigma_, f.summary.loc["sigma_", "se(coef)"])}),
    # lifelines' exponential has the scale lambda_ = 1 / rate: se(rate) = se / lambda_^2.
    "exponential": ("ExponentialFitter", jm.models.exponential,
                    lambda f: {"rate": (1.0 / f.lambda_,
                                        f.summary.loc["lambda_", "se(coef)"] / f.lambda_**2)}),
}


def _check_against(fit, reference, expected):
    assert fit.converged
    np.testing.assert_allclose(fit.loglik, reference.log_likelihood_, rtol=LOGLIK_RTOL)
    assert fit.loglik >= reference.log_likelihood_ - 1e-10  # ours is the maximum
    for name, (value, se) in expected.items():
        np.testing.assert_allclose(fit.params[name], value, rtol=PARAM_RTOL, err_msg=name)
        np.testing.assert_allclose(fit.se[name], se, rtol=SE_RTOL, err_msg=name)


@pytest.mark.parametrize("family", list(FITTERS))
def test_right_censored_waltons_matches_lifelines(family):
    fitter_name, model, expected = FITTERS[family]
    x, observed = _waltons()
    reference = getattr(lifelines, fitter_name)().fit(x, observed, fit_options=LIFELINES_OPTIONS)
    fit = jm.fit(jm.censored(model), None, (x, observed))
    _check_against(fit, reference, expected(reference))


@pytest.mark.parametrize("family", list(FITTERS))
def test_left_truncated_psychiatric_matches_lifelines(family):
    fitter_name, model, expected = FITTERS[family]
    x, observed, entry = _psychiatric()
    reference = getattr(lifelines, fitter_name)().fit(x, observed, entry=entry,
                                                     fit_options=LIFELINES_OPTIONS)
    fit = jm.fit(jm.censored(model, truncated=True), None, (x, observed, entry))
    _check_against(fit, reference, expected(reference))


def test_censored_exponential_closed_form():
    x, observed, entry = _psychiatric()
    model = jm.censored(jm.models.exponential, truncated=True)
    fit = jm.fit(model, None, (x, observed, entry))
    rate = observed.sum() / (x - entry).sum()
    np.testing.assert_allclose(fit.params["rate"], rate, rtol=1e-12)
    np.testing.assert_allclose(fit.se["rate"], rate / np.sqrt(observed.sum()), rtol=1e-9)
    np.testing.assert_allclose(model.closed_form((x, observed, entry))["rate"], rate, rtol=1e-14)


@pytest.mark.parametrize("family, truncated", [
    ("normal", False), ("normal", True),
    # The gamma's log-survival (series and continued fraction) takes seconds to compile.
    pytest.param("gamma", False, marks=pytest.mark.heavy),
    pytest.param("gamma", True, marks=pytest.mark.heavy),
])
def test_gamma_and_normal_match_scipy_likelihood(family, truncated):
    """The likelihood built from scipy's logpdf and logsf, maximised by scipy: the same
    optimum, and our log-likelihood equals scipy's at our estimate."""
    x, observed, entry = _psychiatric()
    data = (x, observed, entry) if truncated else (x, observed)
    fit = jm.fit(jm.censored(getattr(jm.models, family), truncated=truncated), None, data)
    assert fit.converged

    def scipy_loglik(params):
        if family == "gamma":
            dist = stats.gamma(params["shape"], scale=1.0 / params["rate"])
        else:
            dist = stats.norm(params["mu"], params["sigma"])
        terms = np.where(observed == 1, dist.logpdf(x), dist.logsf(x))
        return terms.sum() - (dist.logsf(entry).sum() if truncated else 0.0)

    params = {k: float(v) for k, v in fit.params.items()}
    np.testing.assert_allclose(fit.loglik, scipy_loglik(params), rtol=1e-12)
    names = sorted(params)
    found = optimize.minimize(
        lambda v: -scipy_loglik(dict(zip(names, np.exp(v) if family == "gamma" else
                                         [v[0], np.exp(v[1])]))),
        np.log([params[n] for n in names]) * 0.9 if family == "gamma"
        else [params["mu"] * 0.9, np.log(params["sigma"]) * 0.9], method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000})
    assert -found.fun <= fit.loglik + 1e-9
    np.testing.assert_allclose(-found.fun, fit.loglik, rtol=1e-9)


def test_log_upper_gamma_matches_scipy():
    a = np.array([0.1, 0.3, 1.0, 2.5, 10.0, 30.0, 100.0])
    x = np.geomspace(1e-3, 1e3, 61)
    A, X = np.meshgrid(a, x)
    ours = np.asarray(log_upper_gamma(A, X))
    reference = stats.gamma.logsf(X, A)
    # Where scipy's value is a normal float (it underflows to -inf past Q ~ 1e-308, and log Q
    # = -P is subnormal for P below 1e-308).
    usable = np.isfinite(reference) & (np.abs(reference) > 1e-290)
    assert usable.sum() >= 390
    np.testing.assert_allclose(ours[usable], reference[usable], rtol=LOGSF_RTOL)
    assert np.isfinite(ours).all()


def test_log_upper_gamma_far_tail_closed_forms():
    """Where scipy's Q underflows: Q(1, x) = e^-x and Q(1/2, x) = erfc(sqrt x) = 2 Phi(-sqrt 2x)."""
    x = np.geomspace(10.0, 1e3, 25)
    np.testing.assert_allclose(log_upper_gamma(np.ones_like(x), x), -x, rtol=LOGSF_RTOL)
    half = np.log(2.0) + special.log_ndtr(-np.sqrt(2.0 * x))
    np.testing.assert_allclose(log_upper_gamma(np.full_like(x, 0.5), x), half, rtol=LOGSF_RTOL)
    assert stats.gamma.logsf(x[-1], 0.5) == -np.inf  # where log(gammaincc) would give up


def test_far_tail_censoring_stays_finite():
    """Censored far in the tail (cdf rounds to 1): log(1 - cdf) would be -inf."""
    x = np.array([1.0, 2.0, 1.5, 60.0])
    observed = np.array([1.0, 1.0, 1.0, 0.0])
    for family in ("normal", "lognormal", "gamma"):
        model = jm.censored(getattr(jm.models, family))
        params = {"normal": {"mu": 1.5, "sigma": 0.5}, "lognormal": {"mu": 0.3, "sigma": 0.3},
                  "gamma": {"shape": 9.0, "rate": 6.0}}[family]
        terms = np.asarray(model.log_density(params, (x, observed)))
        assert np.isfinite(terms).all(), family
        assert terms[-1] < -50.0, family


def test_fit_batch_matches_loop_and_masks():
    x, observed = _waltons()
    X = np.stack([x, 1.3 * x, x[::-1]])
    E = np.stack([observed, observed, observed[::-1]])
    mask = np.ones(X.shape, bool)
    mask[1, 120:] = False
    X_padded = X.copy()
    X_padded[1, 120:] = -7.0  # padding outside the support is ignored
    model = jm.censored(jm.models.weibull)
    batch = jm.fit_batch(model, None, (X_padded, E), mask=mask)
    assert batch.converged.all()
    for i, (xi, ei) in enumerate([(X[0], E[0]), (X[1, :120], E[1, :120]), (X[2], E[2])]):
        one = jm.fit(model, None, (xi, ei))
        for name in ("shape", "scale"):
            np.testing.assert_allclose(batch.params[name][i], one.params[name], rtol=1e-9)
            np.testing.assert_allclose(batch.se[name][i], one.se[name], rtol=1e-7)


def test_same_arguments_same_model():
    assert jm.censored(jm.models.gamma) is jm.censored(jm.models.gamma)
    assert jm.censored(jm.models.gamma) != jm.censored(jm.models.gamma, truncated=True)


@pytest.mark.parametrize("data, truncated, message", [
    (np.array([1.0, 2.0]), False, "takes data \\(x, observed\\)"),
    ((np.array([1.0, 2.0]), np.array([1.0, 0.5])), False, "observed must be 1"),
    ((np.array([1.0, -2.0]), np.array([1.0, 0.0])), False, "must be > 0"),
    ((np.array([1.0, 2.0]), np.array([1.0, 0.0])), True, "takes data \\(x, observed, entry\\)"),
    ((np.array([1.0, 2.0]), np.array([1.0, 0.0]), np.array([0.0, 3.0])), True,
     "entry must not exceed x"),
    ((np.array([1.0, 2.0]), np.array([1.0, 0.0, 1.0])), False, "same shape"),
])
def test_bad_data_is_refused_before_fitting(data, truncated, message):
    with pytest.raises(ValueError, match=message):
        jm.fit(jm.censored(jm.models.weibull, truncated=truncated), None, data)


def test_unsupported_model_is_refused():
    with pytest.raises(ValueError, match="ready models"):
        jm.censored(jm.models.poisson)


def _diabetes(variant: str):
    """lifelines' interval-censored diabetes data (731 rows, 595 exact); ``"mixed"`` also
    opens every 7th interval to the right (upper = inf) and every 11th from 3 on to the
    left (lower = 0), so that all four kinds of observation occur."""
    frame = datasets.load_diabetes()
    lower, upper = frame["left"].to_numpy(float), frame["right"].to_numpy(float)
    if variant == "mixed":
        upper[::7] = np.inf
        lower[3::11] = 0.0
    return lower, upper


@pytest.mark.parametrize("variant", ["plain", "mixed"])
@pytest.mark.parametrize("family", list(FITTERS))
def test_interval_censored_diabetes_matches_lifelines(family, variant):
    fitter_name, model, expected = FITTERS[family]
    lower, upper = _diabetes(variant)
    reference = getattr(lifelines, fitter_name)().fit_interval_censoring(
        lower, upper, fit_options=LIFELINES_OPTIONS)
    fit = jm.fit(jm.censored(model, interval=True), None, (lower, upper))
    _check_against(fit, reference, expected(reference))


@pytest.mark.parametrize("data, message", [
    ((np.array([2.0, 3.0]), np.array([1.0, 4.0])), "upper must be >= lower"),
    ((np.array([-1.0, 3.0]), np.array([1.0, 4.0])), "lower must be >= 0"),
    ((np.array([1.0, 3.0]),), "takes data \\(lower, upper\\)"),
])
def test_interval_bad_data_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        jm.fit(jm.censored(jm.models.weibull, interval=True), None, data)


def test_interval_censored_normal_open_ends_stay_finite():
    """Normal with -inf / +inf bounds: the log-likelihood built from scipy's cdf and sf."""
    lower = np.array([-np.inf, 0.5, 1.0, 2.0, 1.2])
    upper = np.array([0.0, 0.5, np.inf, 3.0, 1.7])
    params = {"mu": 1.0, "sigma": 0.8}
    terms = np.asarray(jm.censored(jm.models.normal, interval=True).log_density(
        params, (lower, upper)))
    dist = stats.norm(1.0, 0.8)
    expected = [dist.logcdf(0.0), dist.logpdf(0.5), dist.logsf(1.0),
                np.log(dist.cdf(3.0) - dist.cdf(2.0)), np.log(dist.cdf(1.7) - dist.cdf(1.2))]
    np.testing.assert_allclose(terms, expected, rtol=1e-12)


def test_command_line_event_and_entry_columns(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    from jaxmle.tabular._cli import main

    x, observed, entry = _psychiatric()
    pd.DataFrame({"age_out": x, "died": observed, "age_in": entry}).to_csv(
        tmp_path / "in.csv", index=False)
    code = main(["fit", str(tmp_path / "in.csv"), "--model", "weibull", "--value", "age_out",
                 "--event", "died", "--entry", "age_in", "-o", str(tmp_path / "out.csv"),
                 "--quiet", "--no-cache"])
    assert code == 0
    out = pd.read_csv(tmp_path / "out.csv")
    one = jm.fit(jm.censored(jm.models.weibull, truncated=True), None, (x, observed, entry))
    for name in ("shape", "scale"):
        np.testing.assert_allclose(out[name][0], one.params[name], rtol=1e-8)
        np.testing.assert_allclose(out[f"{name}_se"][0], one.se[name], rtol=1e-7)
    assert main(["fit", str(tmp_path / "in.csv"), "--model", "poisson", "--value", "age_out",
                 "--event", "died", "-o", str(tmp_path / "o2.csv"), "--no-cache"]) == 2
    assert "ready models" in capsys.readouterr().err
