"""Ready models with closed forms: the numerical fit equals the closed form, which equals an
independent numpy/scipy computation; data-driven starts; the model as the engine's input."""

import jax
import numpy as np
import pytest
from scipy import stats as scipy_stats

import jaxmle as jm
from conftest import ESTIMATE_RTOL, SE_RTOL

N, B = 300, 16
CATEGORICAL = jm.models.categorical(3)


def _simulate(name, rng, batch=None):
    shape = (N,) if batch is None else (batch, N)
    if name == "bernoulli":
        return (rng.uniform(size=shape) < 0.3).astype(float)
    if name == "binomial":
        trials = rng.integers(1, 12, size=shape).astype(float)
        return rng.binomial(trials.astype(int), 0.35).astype(float), trials
    if name == "geometric":
        return rng.geometric(0.25, size=shape).astype(float)
    if name == "poisson":
        return rng.poisson(4.2, size=shape).astype(float)
    if name == "exponential":
        return rng.exponential(1 / 2.5, size=shape)
    if name == "normal":
        return rng.normal(7.2, 2.8, size=shape)
    if name == "lognormal":
        return rng.lognormal(0.4, 0.9, size=shape)
    if name == "categorical":
        return rng.choice(3, size=shape, p=[0.2, 0.5, 0.3]).astype(float)
    X = np.concatenate([np.ones(shape + (1,)), rng.normal(size=shape + (2,))], axis=-1)
    return X, X @ np.array([1.0, -2.0, 0.5]) + rng.normal(0.0, 1.5, size=shape)


def _independent_mle(name, data):
    """The textbook closed forms, computed with numpy/scipy, not with jaxmle.models."""
    if name in ("bernoulli",):
        return {"p": data.mean()}
    if name == "binomial":
        return {"p": data[0].sum() / data[1].sum()}
    if name == "geometric":
        return {"p": 1 / data.mean()}
    if name == "poisson":
        return {"rate": data.mean()}
    if name == "exponential":
        return {"rate": 1 / data.mean()}
    if name == "normal":
        return {"mu": data.mean(), "sigma": data.std()}
    if name == "lognormal":
        shape, _, scale = scipy_stats.lognorm.fit(data, floc=0)
        return {"mu": np.log(scale), "sigma": shape}
    if name == "categorical":
        return {"probs": np.bincount(data.astype(int), minlength=3) / len(data)}
    X, y = data
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return {"beta": beta, "sigma": np.sqrt(np.mean((y - X @ beta) ** 2))}


FAR_STARTS = {"bernoulli": {"p": 0.5}, "binomial": {"p": 0.5}, "geometric": {"p": 0.5},
              "poisson": {"rate": 1.0}, "exponential": {"rate": 1.0},
              "normal": {"mu": 0.0, "sigma": 1.0}, "lognormal": {"mu": 0.0, "sigma": 1.0},
              "categorical": {"probs": np.full(3, 1 / 3)},
              "linear_regression": {"beta": np.zeros(3), "sigma": 1.0}}
MODELS = {name: (CATEGORICAL if name == "categorical" else getattr(jm.models, name))
          for name in FAR_STARTS}


def _assert_params_close(actual, expected, rtol):
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=rtol, atol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_fit_from_a_far_start_equals_the_closed_form(name):
    model = MODELS[name]
    data = _simulate(name, np.random.default_rng(1))
    independent = _independent_mle(name, data)
    with jax.enable_x64(True):
        closed = jax.tree_util.tree_map(np.asarray, model.closed_form(data))
    # scipy's lognormal fit is itself numerical (tolerance ~1e-6 on its optimiser).
    _assert_params_close(closed, independent, 1e-6 if name == "lognormal" else 1e-12)
    fit = jm.fit(model, FAR_STARTS[name], data)
    assert fit.converged, fit.status
    _assert_params_close(fit.params, closed, ESTIMATE_RTOL)


@pytest.mark.parametrize("name", list(MODELS))
def test_batch_from_the_model_start_equals_the_vmapped_closed_form(name):
    model = MODELS[name]
    data = _simulate(name, np.random.default_rng(2), batch=B)
    fits = jm.fit_batch(model, None, data)
    assert fits.converged.all(), fits.status
    assert fits.n_iter.max() <= 3  # the start is the closed form, up to the interior margin
    with jax.enable_x64(True):
        closed = jax.tree_util.tree_map(np.asarray, jax.vmap(model.closed_form)(data))
    _assert_params_close(fits.params, closed, ESTIMATE_RTOL)


def test_data_driven_start_ignores_padding_whatever_it_holds():
    data = _simulate("normal", np.random.default_rng(9), batch=B)
    mask = np.arange(N) < np.random.default_rng(10).integers(N // 2, N + 1, size=(B, 1))
    padded = np.where(mask, data, np.nan)
    fits = jm.fit_batch(jm.models.normal, None, padded, mask=mask)
    assert fits.converged.all(), fits.status
    for b in (0, B - 1):
        active = data[b][mask[b]]
        _assert_params_close(fits[b].params, {"mu": active.mean(), "sigma": active.std()},
                             ESTIMATE_RTOL)


def test_all_successes_is_reported_on_the_boundary_not_converged():
    fit = jm.fit(jm.models.bernoulli, None, np.ones(20))
    assert fit.status == jm.Status.BOUNDARY
    assert np.isnan(fit.se["p"])  # no standard error for an estimate drifting to p = 1


def test_init_is_required_without_a_ready_model():
    with pytest.raises(TypeError, match="init is required"):
        jm.fit(jm.models.normal.log_density, None, np.ones(5))
    with pytest.raises(ValueError, match="k >= 2"):
        jm.models.categorical(1)


# ----- models without closed forms: against scipy / statsmodels -----------------------


def test_gamma_shape_solves_its_profile_equation():
    from scipy import optimize, special

    x = np.random.default_rng(3).gamma(2.5, 1 / 1.7, size=N)
    fit = jm.fit(jm.models.gamma, None, x)
    assert fit.converged
    # d/dk of the profile log-likelihood: log k - digamma(k) = log(mean x) - mean(log x).
    target = np.log(x.mean()) - np.log(x).mean()
    shape = optimize.brentq(lambda k: np.log(k) - special.digamma(k) - target, 1e-3, 1e3,
                            xtol=1e-14, rtol=1e-15)
    _assert_params_close(fit.params, {"shape": shape, "rate": shape / x.mean()}, ESTIMATE_RTOL)


# scipy's numerical fits stop at about 1e-4..1e-5 relative: jaxmle must agree to that and
# reach a log-likelihood at least as high (to rounding).
SCIPY_FITS = {
    "beta": (lambda rng: rng.beta(2.0, 5.0, size=N),
             lambda x: scipy_stats.beta.fit(x, floc=0, fscale=1),
             lambda p: (p["a"], p["b"], 0.0, 1.0),
             lambda x, q: scipy_stats.beta.logpdf(x, *q).sum()),
    "weibull": (lambda rng: 1.3 * rng.weibull(1.8, size=N),
                lambda x: scipy_stats.weibull_min.fit(x, floc=0),
                lambda p: (p["shape"], 0.0, p["scale"]),
                lambda x, q: scipy_stats.weibull_min.logpdf(x, *q).sum()),
    "student_t": (lambda rng: 1.0 + 2.0 * rng.standard_t(4.0, size=2000),
                  lambda x: scipy_stats.t.fit(x),
                  lambda p: (p["df"], p["loc"], p["scale"]),
                  lambda x, q: scipy_stats.t.logpdf(x, *q).sum()),
}


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(SCIPY_FITS))
def test_against_scipy_fit(name):
    simulate, scipy_fit, as_scipy, loglik = SCIPY_FITS[name]
    x = simulate(np.random.default_rng(4))
    fit = jm.fit(getattr(jm.models, name), None, x)
    assert fit.converged, fit.status
    ours, theirs = np.array(as_scipy(fit.params), float), np.array(scipy_fit(x), float)
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-6)
    assert loglik(x, ours) >= loglik(x, theirs) - 1e-9
    np.testing.assert_allclose(fit.loglik, loglik(x, ours), rtol=1e-12)


def test_regressions_and_negative_binomial_against_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, 2))])
    y_logit = (rng.uniform(size=N) < 1 / (1 + np.exp(-X @ [0.3, -1.0, 0.8]))).astype(float)
    y_count = rng.poisson(np.exp(X @ [0.5, 0.3, -0.2])).astype(float)
    for model, reference, y in ((jm.models.logistic_regression, sm.Logit, y_logit),
                                (jm.models.poisson_regression, sm.Poisson, y_count)):
        fit = jm.fit(model, None, (X, y))
        result = reference(y, X).fit(disp=0, tol=1e-12, maxiter=100)
        assert fit.converged
        np.testing.assert_allclose(fit.params["beta"], result.params, rtol=1e-8)
        np.testing.assert_allclose(fit.se["beta"], result.bse, rtol=1e-6)
        np.testing.assert_allclose(fit.loglik, result.llf, rtol=1e-12)

    counts = rng.negative_binomial(3.0, 3.0 / (3.0 + 4.0), size=2000).astype(float)
    fit = jm.fit(jm.models.negative_binomial, None, counts)
    result = sm.NegativeBinomial(counts, np.ones((len(counts), 1))).fit(
        method="newton", disp=0, tol=1e-14, maxiter=200)
    # statsmodels' NB2: log mean = const, alpha = 1 / size.
    assert fit.converged
    np.testing.assert_allclose(fit.params["mean"], np.exp(result.params[0]), rtol=1e-8)
    np.testing.assert_allclose(fit.params["size"], 1 / result.params[1], rtol=1e-8)
    np.testing.assert_allclose(fit.loglik, result.llf, rtol=1e-10)


# ----- simulators, closed-form standard errors, the mixture ---------------------------

TRUTHS = {
    "bernoulli": {"p": 0.3}, "binomial": {"p": 0.35}, "geometric": {"p": 0.25},
    "poisson": {"rate": 4.2}, "exponential": {"rate": 2.5},
    "normal": {"mu": 7.2, "sigma": 2.8}, "lognormal": {"mu": 0.4, "sigma": 0.9},
    "categorical": {"probs": np.array([0.2, 0.5, 0.3])},
    "linear_regression": {"beta": np.array([1.0, -2.0, 0.5]), "sigma": 1.5},
    "gamma": {"shape": 2.5, "rate": 1.7}, "beta": {"a": 2.0, "b": 5.0},
    "weibull": {"shape": 1.8, "scale": 1.3}, "negative_binomial": {"mean": 4.0, "size": 3.0},
    "student_t": {"loc": 1.0, "scale": 2.0, "df": 4.0},
    "logistic_regression": {"beta": np.array([0.3, -1.0, 0.8])},
    "poisson_regression": {"beta": np.array([0.5, 0.3, -0.2])},
    "gaussian_mixture": {"weights": np.array([0.3, 0.7]), "mu": np.array([-1.0, 2.0]),
                         "sigma": np.array([0.8, 1.2])},
}
MIXTURE = jm.models.gaussian_mixture(2)
ALL_MODELS = {**MODELS, **{name: getattr(jm.models, name) for name in (
    "gamma", "beta", "weibull", "negative_binomial", "student_t", "logistic_regression",
    "poisson_regression")}, "gaussian_mixture": MIXTURE}


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_simulated_data_recover_the_truth(name):
    """Simulator and log-density agree: at n = 4000 every estimate lies within 4.5 SE of the
    parameter it was simulated from (fixed seed; 4.5 SE is exceeded with probability 7e-6)."""
    model = ALL_MODELS[name]
    with jax.enable_x64(True):
        data = model.simulate(jax.random.key(11), TRUTHS[name], 4000)
    fit = jm.fit(model, None, data)
    assert fit.converged, fit.status
    for key, truth in TRUTHS[name].items():
        z = (np.asarray(fit.params[key]) - truth) / np.asarray(fit.se[key])
        assert np.all(np.abs(z) < 4.5), (key, z)


@pytest.mark.parametrize("name", list(MODELS))
def test_standard_errors_equal_the_closed_form_fisher_se(name):
    model = MODELS[name]
    data = _simulate(name, np.random.default_rng(6))
    fit = jm.fit(model, None, data)
    with jax.enable_x64(True):
        expected = jax.tree_util.tree_map(np.asarray, model.closed_form_se(data))
    _assert_params_close(fit.se, expected, SE_RTOL)


def _mixture_em(x, weights, mu, sigma, tol=1e-14, max_iter=100_000):
    """Independent EM for a Normal mixture in numpy (Dempster, Laird & Rubin 1977)."""
    for _ in range(max_iter):
        log_joint = np.log(weights) + scipy_stats.norm.logpdf(x[:, None], mu, sigma)
        resp = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True))
        total = resp.sum(axis=0)
        new_mu = resp.T @ x / total
        new_sigma = np.sqrt((resp * (x[:, None] - new_mu) ** 2).sum(axis=0) / total)
        new_weights = total / len(x)
        change = np.max(np.abs(np.concatenate([new_mu - mu, new_sigma - sigma])))
        weights, mu, sigma = new_weights, new_mu, new_sigma
        if change < tol:
            break
    return {"weights": weights, "mu": mu, "sigma": sigma}


def test_gaussian_mixture_equals_an_independent_em_and_orders_its_components():
    rng = np.random.default_rng(7)
    labels = rng.uniform(size=N) < 0.35
    x = np.where(labels, rng.normal(-1.0, 0.8, N), rng.normal(2.0, 1.2, N))
    fit = jm.fit(MIXTURE, None, x)
    assert fit.converged, fit.status
    # EM started with the labels swapped: the canonical order sorts its answer by the means.
    em = _mixture_em(x, np.array([0.5, 0.5]), np.array([2.5, -0.5]), np.array([1.0, 1.0]))
    order = np.argsort(em["mu"])
    # EM converges linearly: its answer is good to ~1e-10, not to machine precision.
    _assert_params_close(fit.params, {key: value[order] for key, value in em.items()}, 1e-8)
    with pytest.raises(ValueError, match="k >= 2"):
        jm.models.gaussian_mixture(1)


@pytest.mark.heavy
def test_gaussian_mixture_batch_uses_one_label_order():
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(8), B)
        data = jax.vmap(lambda key: MIXTURE.simulate(key, TRUTHS["gaussian_mixture"], 500))(keys)
    fits = jm.fit_batch(MIXTURE, None, data)
    assert fits.converged.all(), fits.status
    assert np.all(np.diff(fits.params["mu"], axis=1) > 0)
    np.testing.assert_allclose(fits[3].params["mu"], jm.fit(MIXTURE, None, data[3]).params["mu"],
                               rtol=ESTIMATE_RTOL)
