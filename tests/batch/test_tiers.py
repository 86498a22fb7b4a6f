"""Compilation in two tiers (``batch/_tiers``): a shape's first batch fits from the given
start, later batches of the same model, options and shapes from the reduced problems'
optima, with the same estimates to the stopping tolerance."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import jaxmle as jm
from jaxmle.batch import _batch
from models import CASES, simulate

NORMAL = CASES["normal"]
GAMMA = lambda p, x: stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])
# Both tiers stop at the relative-gradient test (1e-10) or a Newton step below 1e-9
# standard errors, from different last iterates: estimates agree far below their
# standard errors, not to the last bit.
TIER_RTOL = 1e-9


def _gamma_batch(x, **options):
    return jm.fit_batch(GAMMA, {"shape": 1.0, "rate": 1.0}, x, constraints=jm.positive,
                        **options)


def test_later_calls_of_a_shape_start_from_the_reduced_optima_with_the_same_estimates():
    x = np.random.default_rng(11).gamma(2.5, 1 / 1.7, size=(48, 300))
    first, second = _gamma_batch(x), _gamma_batch(x)
    assert first.converged.all() and second.converged.all()
    assert (first.n_iter >= 4).all() and (second.n_iter <= 1).all()
    for key in ("shape", "rate"):
        np.testing.assert_allclose(second.params[key], first.params[key], rtol=TIER_RTOL)
        np.testing.assert_allclose(second.se[key], first.se[key], rtol=TIER_RTOL)
    np.testing.assert_allclose(second.loglik, first.loglik, rtol=1e-13)
    # Another shape (or other options) is a first call again.
    other = _gamma_batch(x[:, :200])
    assert (other.n_iter >= 4).all()
    assert (_gamma_batch(x, max_iter=50).n_iter >= 4).all()


def test_large_batches_start_from_the_reduced_optima_at_once(monkeypatch):
    monkeypatch.setattr(_batch, "REDUCE_MIN_ELEMENTS", 48 * 300)
    x = np.random.default_rng(12).gamma(2.5, 1 / 1.7, size=(48, 300))
    assert (_gamma_batch(x).n_iter <= 1).all()
    assert (_gamma_batch(x[:, :299]).n_iter >= 4).all()


def test_models_without_a_reduced_form_run_the_same_program_every_call():
    def logistic(beta, data):
        X, y = data
        eta = X @ beta
        return y * eta - jnp.logaddexp(0.0, eta)

    rng = np.random.default_rng(13)
    X = np.concatenate([np.ones((24, 200, 1)), rng.normal(size=(24, 200, 2))], axis=2)
    y = (rng.uniform(size=(24, 200)) < 0.4).astype(float)
    first, second = (jm.fit_batch(logistic, np.zeros(3), (X, y)) for _ in range(2))
    assert first.converged.all()
    np.testing.assert_array_equal(second.params, first.params)
    np.testing.assert_array_equal(second.n_iter, first.n_iter)


def test_a_dataset_the_reduced_start_cannot_fit_is_fitted_from_its_given_start():
    # NaN data block a dataset in both programs; a dataset with too few observations for
    # its reduced problem is fitted on all observations from the given start.
    x = simulate("normal", batch=16, seed=14)
    x[3, 5] = np.nan
    mask = np.ones(x.shape, bool)
    mask[9, 1:] = False  # one observation: too few for two parameters
    fits = [jm.fit_batch(NORMAL.log_density, NORMAL.init, x, mask=mask,
                         constraints=NORMAL.constraints) for _ in range(2)]
    for fit in fits:
        assert fit[3].status == jm.Status.INVALID_DATA
        assert fit[9].status == jm.Status.TOO_FEW_OBSERVATIONS
        assert fit.converged.sum() == 14
    np.testing.assert_allclose(fits[1].params["mu"], fits[0].params["mu"], rtol=TIER_RTOL)
