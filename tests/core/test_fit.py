"""The Fit result, inference helpers, MAP, boundary cases, compilation and precision."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import jaxmle as jm
from models import CASES, simulate

NORMAL = CASES["normal"]
BERNOULLI = CASES["bernoulli"]


@pytest.fixture(scope="module")
def normal_fit():
    return jm.fit(NORMAL.log_density, NORMAL.init, simulate("normal", seed=20),
                  constraints=NORMAL.constraints)


def test_fit_is_a_pytree_that_jit_returns(normal_fit):
    again = jax.jit(lambda f: f)(normal_fit)
    assert isinstance(again, jm.Fit)
    np.testing.assert_array_equal(again.params["mu"], normal_fit.params["mu"])
    leaves = jax.tree_util.tree_leaves(normal_fit)
    assert len(leaves) == 2 + 2 + 6  # params, se, cov, loglik, status, n_iter, grad_norm, n_obs


def test_conf_int_aic_bic_and_summary(normal_fit):
    lower, upper = normal_fit.conf_int(0.9)
    z = 1.6448536269514722
    np.testing.assert_allclose(upper["mu"] - lower["mu"], 2 * z * normal_fit.se["mu"], rtol=1e-12)
    np.testing.assert_allclose(normal_fit.aic, 4 - 2 * normal_fit.loglik, rtol=1e-15)
    np.testing.assert_allclose(normal_fit.bic, 2 * np.log(200) - 2 * normal_fit.loglik, rtol=1e-15)
    text = normal_fit.summary()
    for piece in ("mu", "sigma", "std.err", "95% lower", "AIC", "BIC", "CONVERGED", "newton"):
        assert piece in text
    assert "status=CONVERGED" in repr(normal_fit)
    with pytest.raises(ValueError, match="level"):
        normal_fit.conf_int(1.5)


def test_loglik_excludes_prior_and_map_equals_beta_posterior_mode():
    y = simulate("bernoulli", seed=21)[:30]
    a, b = 2.0, 5.0
    prior = lambda p: stats.beta.logpdf(p["p"], a, b)
    fit = jm.fit(BERNOULLI.log_density, BERNOULLI.init, y, constraints=BERNOULLI.constraints,
                 log_prior=prior)
    mode = (y.sum() + a - 1) / (y.size + a + b - 2)
    np.testing.assert_allclose(fit.params["p"], mode, rtol=1e-10)
    p = fit.params["p"]
    np.testing.assert_allclose(fit.loglik, np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)), rtol=1e-12)
    # Observed information of the log-posterior at the mode (delta-method free: p itself).
    info = y.sum() / p**2 + (y.size - y.sum()) / (1 - p) ** 2 + (a - 1) / p**2 + (b - 1) / (1 - p) ** 2
    np.testing.assert_allclose(fit.se["p"], 1 / np.sqrt(info), rtol=1e-7)


@pytest.mark.heavy
def test_all_successes_is_reported_on_the_boundary_not_converged():
    fit = jm.fit(BERNOULLI.log_density, BERNOULLI.init, np.ones(3), constraints=BERNOULLI.constraints)
    assert fit.status == jm.Status.BOUNDARY and not fit.converged
    assert fit.params["p"] > 0.999999
    with_prior = jm.fit(BERNOULLI.log_density, BERNOULLI.init, np.ones(3),
                        constraints=BERNOULLI.constraints,
                        log_prior=lambda p: stats.beta.logpdf(p["p"], 2.0, 2.0))
    assert with_prior.converged
    np.testing.assert_allclose(with_prior.params["p"], 4 / 5, rtol=1e-10)


def test_perfect_separation_is_not_reported_as_converged():
    x = np.linspace(-2, 2, 40)
    X = np.column_stack([np.ones(40), x])
    y = (x > 0.1).astype(float)

    def logistic(beta, data):
        X, y = data
        eta = X @ beta
        return y * eta - jnp.logaddexp(0.0, eta)

    fit = jm.fit(logistic, jnp.zeros(2), (X, y))
    assert not fit.converged
    assert fit.status == jm.Status.BOUNDARY


def test_non_identified_parameters_give_singular_hessian_and_nan_se():
    x = simulate("normal", seed=22)
    fit = jm.fit(lambda p, x: stats.norm.logpdf(x, p["a"] + p["b"], 2.8), {"a": 0.0, "b": 0.0}, x)
    assert fit.status == jm.Status.SINGULAR_HESSIAN
    assert np.isnan(fit.se["a"]) and np.isnan(fit.cov).all()


@pytest.mark.heavy
def test_lr_test_exponential_within_gamma():
    x = simulate("exponential", seed=23)
    exponential = jm.fit(lambda p, x: stats.gamma.logpdf(x, 1.0, scale=1 / p["rate"]),
                         {"rate": 1.0}, x, constraints=jm.positive)
    gamma = jm.fit(lambda p, x: stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"]),
                   {"shape": 1.0, "rate": 1.0}, x, constraints=jm.positive)
    statistic, df, pvalue = jm.lr_test(exponential, gamma)
    assert df == 1
    np.testing.assert_allclose(statistic, 2 * (gamma.loglik - exponential.loglik), rtol=1e-12)
    from scipy.stats import chi2
    np.testing.assert_allclose(pvalue, chi2.sf(statistic, 1), rtol=1e-10)
    with pytest.raises(ValueError, match="more free parameters"):
        jm.lr_test(gamma, exponential)


def test_delta_method_single_and_batch(normal_fit):
    value, se = jm.delta_method(lambda p: p["sigma"] ** 2, normal_fit)
    np.testing.assert_allclose(value, normal_fit.params["sigma"] ** 2, rtol=1e-15)
    np.testing.assert_allclose(se, 2 * normal_fit.params["sigma"] * normal_fit.se["sigma"], rtol=1e-12)
    many = jm.fit_batch(NORMAL.log_density, NORMAL.init, simulate("normal", batch=12, seed=5),
                        constraints=NORMAL.constraints)
    value, se = jm.delta_method(lambda p: {"cv": p["sigma"] / p["mu"]}, many)
    assert value["cv"].shape == (12,) and se["cv"].shape == (12,)
    one_value, one_se = jm.delta_method(lambda p: {"cv": p["sigma"] / p["mu"]}, many[4])
    np.testing.assert_allclose(se["cv"][4], one_se["cv"], rtol=1e-12)


def test_repeated_fits_of_same_shape_do_not_retrace():
    traces = []

    def counted(p, x):
        traces.append(1)
        return stats.poisson.logpmf(x, p["rate"])

    data = [simulate("poisson", batch=8, seed=s) for s in (30, 31, 32)]
    for x in data:
        fit = jm.fit_batch(counted, {"rate": 1.0}, x, constraints={"rate": jm.interval(0.0, 50.0)})
        assert fit.converged.all()
    first = len(traces)
    for x in data:
        jm.fit_batch(counted, {"rate": 1.0}, x, constraints={"rate": jm.interval(0, 50)})
    assert len(traces) == first


@pytest.mark.heavy
def test_float64_without_touching_the_global_flag_and_float32_option():
    script = textwrap.dedent("""
        import jax, numpy as np
        from jax.scipy import stats
        import jaxmle as jm
        x = np.random.default_rng(0).normal(3.0, 2.0, size=500)
        ld = lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"])
        f64 = jm.fit(ld, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": jm.positive})
        f32 = jm.fit(ld, {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": jm.positive},
                     precision="float32")
        assert not jax.config.jax_enable_x64
        assert f64.params["mu"].dtype == np.float64 and f32.params["mu"].dtype == np.float32
        assert abs(f64.params["mu"] - x.mean()) < 1e-8 * abs(x.mean()), f64
        assert abs(f32.params["mu"] - x.mean()) < 1e-5 * abs(x.mean()), f32
        assert f64.converged and f32.converged
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
