"""Conformance table: every method on every classic model against its closed-form MLE and
Fisher standard error, for a single fit and for a batch of N_BATCH datasets."""

import numpy as np
import optax
import pytest

import jaxmle as jm
from conftest import ESTIMATE_RTOL, OPTAX_GTOL, OPTAX_RTOL, SE_RTOL
from models import CASES, N_BATCH, simulate

ADAM = optax.adam(0.05)
METHODS = {"newton": ("newton", {}), "bfgs": ("bfgs", {}), "lbfgs": ("lbfgs", {}),
           "adam": (ADAM, {"gtol": OPTAX_GTOL})}


def _tolerance(method_name):
    return OPTAX_RTOL if method_name == "adam" else ESTIMATE_RTOL


def _check(fit_params, fit_se, expected, expected_se, rtol):
    for key in expected:
        np.testing.assert_allclose(fit_params[key], expected[key], rtol=rtol, atol=0)
        np.testing.assert_allclose(fit_se[key], expected_se[key], rtol=max(SE_RTOL, rtol), atol=0)


@pytest.mark.parametrize("method_name", list(METHODS))
@pytest.mark.parametrize("model", list(CASES))
def test_single_fit_matches_closed_form(model, method_name):
    case = CASES[model]
    method, options = METHODS[method_name]
    data = simulate(model, seed=1)
    fit = jm.fit(case.log_density, case.init, data, constraints=case.constraints,
                 method=method, **options)
    assert fit.converged, fit.summary()
    # The method is named in results: optax.adam is a chain of scale_by_adam and a scale.
    assert fit.method == {"adam": "optax:scale_by_adam+scale"}.get(method_name, method_name)
    expected, expected_se = case.closed_form(data)
    _check(fit.params, fit.se, expected, expected_se, _tolerance(method_name))


@pytest.mark.heavy
@pytest.mark.parametrize("method_name", list(METHODS))
@pytest.mark.parametrize("model", list(CASES))
def test_batch_fit_matches_closed_form(model, method_name):
    case = CASES[model]
    method, options = METHODS[method_name]
    data = simulate(model, batch=N_BATCH, seed=2)
    fits = jm.fit_batch(case.log_density, case.init, data, constraints=case.constraints,
                        method=method, **options)
    assert len(fits) == N_BATCH
    assert fits.converged.all(), fits.summary()
    per_dataset = [case.closed_form(d) for d in data]
    expected = {key: np.stack([p[key] for p, _ in per_dataset]) for key in per_dataset[0][0]}
    expected_se = {key: np.stack([s[key] for _, s in per_dataset]) for key in per_dataset[0][1]}
    _check(fits.params, fits.se, expected, expected_se, _tolerance(method_name))


def test_simplex_counts_one_free_parameter_less():
    case = CASES["multinomial"]
    fit = jm.fit(case.log_density, case.init, simulate("multinomial", seed=1),
                 constraints=case.constraints)
    assert fit.n_params == 3
    assert fit.cov.shape == (4, 4)
    # The simplex covariance is (diag(p) - p p') / n: rows sum to zero.
    np.testing.assert_allclose(fit.cov.sum(axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(fit.params["probs"].sum(), 1.0, rtol=1e-15)
