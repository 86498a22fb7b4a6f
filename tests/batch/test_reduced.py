"""Batches of models affine in functions of their data (``batch/_reduced``): each dataset
starts at its reduced problem's optimum and is certified there; the full solve runs only
where a dataset is left running, and its estimates are those of the full solve."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats

import jaxmle as jm
from jaxmle.batch import _batch, _reduced
from models import CASES, simulate

NORMAL = CASES["normal"]
GAMMA = lambda p, x: stats.gamma.logpdf(x, p["shape"], scale=1 / p["rate"])
# From the given start and from the reduced optimum, fits stop at different last iterates
# that pass the same tests (relative gradient 1e-10, or a Newton step below 1e-9 standard
# errors): estimates agree far below their standard errors, not to the last bit.
START_RTOL = 1e-9


def _gamma_batch(x, **options):
    return jm.fit_batch(GAMMA, {"shape": 1.0, "rate": 1.0}, x, constraints=jm.positive,
                        **options)


def test_a_reducible_batch_is_certified_at_its_reduced_optima_without_a_full_solve(
        full_solves, monkeypatch, full_solve_only):
    x = np.random.default_rng(11).gamma(2.5, 1 / 1.7, size=(48, 300))
    reduced, again = _gamma_batch(x), _gamma_batch(x)
    assert len(full_solves) == 0
    assert reduced.converged.all() and (reduced.n_iter == 0).all()
    for field in ("loglik", "status", "cov"):  # no dependence on earlier calls
        np.testing.assert_array_equal(getattr(again, field), getattr(reduced, field))
    monkeypatch.setattr(_reduced, "reducible", lambda spec, data: False)
    given = _gamma_batch(x)
    assert len(full_solves) == 1 and given.converged.all() and (given.n_iter >= 4).all()
    for key in ("shape", "rate"):
        np.testing.assert_allclose(reduced.params[key], given.params[key], rtol=START_RTOL)
        np.testing.assert_allclose(reduced.se[key], given.se[key], rtol=START_RTOL)
    np.testing.assert_allclose(reduced.loglik, given.loglik, rtol=1e-13)


def test_a_dataset_left_running_at_its_reduced_optimum_sends_the_batch_to_the_full_solve(
        full_solves):
    # A gradient tolerance below rounding: no reduced optimum passes the start's test, and
    # the full solve ends each fit by Newton's own stationarity test.
    x = np.random.default_rng(12).gamma(2.5, 1 / 1.7, size=(16, 300))
    strict = _gamma_batch(x, gtol=1e-300)
    assert len(full_solves) == 1
    assert strict.converged.all() and (strict.n_iter >= 1).all()
    default = _gamma_batch(x)
    for key in ("shape", "rate"):
        np.testing.assert_allclose(strict.params[key], default.params[key], rtol=START_RTOL)


def test_a_model_without_a_reduced_form_is_solved_from_its_given_start(full_solves,
                                                                       full_solve_only):
    # Newton's quick pass aside (``test_quick``), the full solve from the given start.
    def logistic(beta, data):
        X, y = data
        eta = X @ beta
        return y * eta - jnp.logaddexp(0.0, eta)

    rng = np.random.default_rng(13)
    X = np.concatenate([np.ones((24, 200, 1)), rng.normal(size=(24, 200, 2))], axis=2)
    y = (rng.uniform(size=(24, 200)) < 0.4).astype(float)
    fits = jm.fit_batch(logistic, np.zeros(3), (X, y))
    assert len(full_solves) == 1 and fits.converged.all() and (fits.n_iter >= 2).all()


def test_datasets_the_reduced_start_cannot_fit_keep_their_status(full_solves):
    # NaN data block a dataset; one with a single observation has too few for two
    # parameters: both are finished at their start, so no full solve is needed.
    x = simulate("normal", batch=16, seed=14)
    x[3, 5] = np.nan
    mask = np.ones(x.shape, bool)
    mask[9, 1:] = False
    fit = jm.fit_batch(NORMAL.log_density, NORMAL.init, x, mask=mask,
                       constraints=NORMAL.constraints)
    assert len(full_solves) == 0
    assert fit[3].status == jm.Status.INVALID_DATA
    assert fit[9].status == jm.Status.TOO_FEW_OBSERVATIONS
    assert fit.converged.sum() == 14


def test_compiler_options_do_not_change_the_reduced_path(monkeypatch):
    # As for the full solve (test_scale): the reduced start and the certification compiled
    # with XLA's default CPU options give the same fits, to rounding (1e-10 relative).
    x = np.random.default_rng(15).gamma(2.5, 1 / 1.7, size=(32, 300))
    ours = _gamma_batch(x)
    for name, function in (("reduced_starts", _batch._reduced_starts),
                           ("certify", _batch._certify_batch)):
        monkeypatch.setattr(_batch, name, jax.jit(function, static_argnums=(0, 1)))
    defaults = _gamma_batch(x)
    np.testing.assert_array_equal(defaults.status, ours.status)
    np.testing.assert_array_equal(defaults.n_iter, ours.n_iter)
    for key in ("shape", "rate"):
        np.testing.assert_allclose(defaults.params[key], ours.params[key], rtol=1e-10)
        np.testing.assert_allclose(defaults.se[key], ours.se[key], rtol=1e-10)


def test_the_certification_is_compiled_once_beside_the_reduced_start(caplog, compiles_logged):
    # Compiled ahead on a thread while the reduced start compiles, in the precision the
    # call enters (float64 here, where x64 is off outside it): the call then finds it
    # compiled (a second compile would be logged).
    x = np.random.default_rng(16).gamma(2.5, 1 / 1.7, size=(24, 301))
    with jax.enable_x64(False), caplog.at_level(logging.WARNING):
        fits = _gamma_batch(x)
    compiles = [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("Compiling jit(_certify_batch)")]
    assert len(compiles) == 1 and "float64" in compiles[0]
    assert fits.converged.all() and (fits.n_iter == 0).all()
