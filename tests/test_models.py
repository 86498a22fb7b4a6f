"""Ready models with closed forms: the numerical fit equals the closed form, which equals an
independent numpy/scipy computation; data-driven starts; the model as the engine's input."""

import jax
import numpy as np
import pytest
from scipy import stats as scipy_stats

import jaxmle as jm
from conftest import ESTIMATE_RTOL

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


def test_all_successes_is_reported_on_the_boundary_not_converged():
    fit = jm.fit(jm.models.bernoulli, None, np.ones(20))
    assert fit.status == jm.Status.BOUNDARY


def test_init_is_required_without_a_ready_model():
    with pytest.raises(TypeError, match="init is required"):
        jm.fit(jm.models.normal.log_density, None, np.ones(5))
    with pytest.raises(ValueError, match="k >= 2"):
        jm.models.categorical(1)
