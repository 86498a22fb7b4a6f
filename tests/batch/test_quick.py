"""The quick pass of batches without a reduced form (``batch/_reduced``, ``_batch.quick``):
the small Newton from each start, certified from its last derivatives; the full solve
fits only the datasets it leaves undecided, from their starts."""

import jax.numpy as jnp
import numpy as np

import jaxmle as jm
from jaxmle.batch import _reduced

CONVERGED = int(jm.Status.CONVERGED)


def logistic(beta, data):
    X, y = data
    eta = X @ beta
    return y * eta - jnp.logaddexp(0.0, eta)


def _logistic_data(batch, n, seed, separated=()):
    rng = np.random.default_rng(seed)
    X = np.concatenate([np.ones((batch, n, 1)), rng.normal(size=(batch, n, 2))], axis=2)
    y = (rng.uniform(size=(batch, n)) < 0.4).astype(float)
    for row in separated:  # the sign of the first covariate gives y: separation
        y[row] = (X[row, :, 1] > 0).astype(float)
    return X, y


def _full_solve_of(data, monkeypatch, **options):
    with monkeypatch.context() as patch:
        patch.setattr(_reduced, "quick_applies", lambda spec: False)
        return jm.fit_batch(logistic, np.zeros(3), data, **options)


def test_a_batch_that_converges_in_the_quick_pass_needs_no_full_solve(full_solves,
                                                                      monkeypatch):
    data = _logistic_data(24, 200, seed=1)
    quick = jm.fit_batch(logistic, np.zeros(3), data)
    assert full_solves == [] and quick.converged.all()
    full = _full_solve_of(data, monkeypatch)
    # Both are Newton from the same start, stopped by the same test: the same iterations,
    # and last iterates that agree far below the standard errors (the trust-region step
    # and the small Newton's differ in rounding).
    np.testing.assert_array_equal(quick.n_iter, full.n_iter)
    np.testing.assert_array_equal(quick.status, full.status)
    np.testing.assert_allclose(quick.params, full.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(quick.se, full.se, rtol=1e-9)
    np.testing.assert_allclose(quick.loglik, full.loglik, rtol=1e-14)


def test_undecided_datasets_alone_are_fitted_by_the_full_solve_from_their_starts(
        full_solves, monkeypatch):
    # Separation: the small Newton runs off towards the supremum at infinity and is not
    # CONVERGED; the full solve from the start then reports Newton's BOUNDARY.
    data = _logistic_data(12, 100, seed=2, separated=(3, 8))
    fits = jm.fit_batch(logistic, np.zeros(3), data)
    assert len(full_solves) == 1
    assert np.flatnonzero(full_solves[0]).tolist() == [3, 8]
    assert fits.status[[3, 8]].tolist() == [int(jm.Status.BOUNDARY)] * 2
    full = _full_solve_of(data, monkeypatch)
    # A dataset's arithmetic in the full solve does not depend on its batch: to the bit.
    for field in ("status", "n_iter", "loglik"):
        np.testing.assert_array_equal(getattr(fits, field)[[3, 8]], getattr(full, field)[[3, 8]])
    np.testing.assert_array_equal(fits.params[[3, 8]], full.params[[3, 8]])
    others = np.setdiff1d(np.arange(12), [3, 8])
    assert fits.converged[others].all()
    np.testing.assert_allclose(fits.params[others], full.params[others], rtol=1e-9, atol=1e-12)


def test_blocked_datasets_keep_their_status_without_a_full_solve(full_solves, monkeypatch):
    X, y = _logistic_data(8, 50, seed=3)
    X[2, 7, 1] = np.nan
    mask = np.ones(y.shape, bool)
    mask[5, 2:] = False  # two observations for three parameters
    fits = jm.fit_batch(logistic, np.zeros(3), (X, y), mask=mask)
    assert full_solves == []
    assert fits.status[2] == jm.Status.INVALID_DATA
    assert fits.status[5] == jm.Status.TOO_FEW_OBSERVATIONS
    assert fits.n_iter[[2, 5]].tolist() == [0, 0]
    assert fits.converged.sum() == 6
    # Not stepped: reported at their start, as by the full solve (NaN log-likelihood for
    # the NaN data, that of the start for the two observations).
    full = _full_solve_of((X, y), monkeypatch, mask=mask)
    np.testing.assert_array_equal(fits.params[[2, 5]], np.zeros((2, 3)))
    np.testing.assert_array_equal(fits.loglik[[2, 5]], full.loglik[[2, 5]])
    assert np.isnan(fits.loglik[2]) and np.isfinite(fits.loglik[5])


def test_a_cap_below_the_iterations_needed_leaves_the_verdict_to_the_full_solve(full_solves):
    data = _logistic_data(6, 100, seed=4)
    capped = jm.fit_batch(logistic, np.zeros(3), data, max_iter=1)
    assert len(full_solves) == 1 and full_solves[0].all()
    assert (capped.status == jm.Status.MAX_ITER).all() and (capped.n_iter == 1).all()


def test_other_methods_go_straight_to_the_full_solve(full_solves):
    fits = jm.fit_batch(logistic, np.zeros(3), _logistic_data(6, 100, seed=5), method="bfgs")
    assert len(full_solves) == 1 and fits.converged.all()


def powell_singular(p, data):
    x1, x2, x3, x4 = p
    r = jnp.stack([x1 + 10 * x2, jnp.sqrt(5.0) * (x3 - x4), (x2 - 2 * x3) ** 2,
                   jnp.sqrt(10.0) * (x1 - x4) ** 2])
    return -0.5 * r ** 2 + 0.0 * data


def test_a_fit_still_falling_relative_to_its_loss_is_left_to_the_full_solve(full_solves,
                                                                            monkeypatch):
    # Powell's singular function (More, Garbow & Hillstrom 1981), minimum 0 at a singular
    # Hessian: the small Newton's steps each remove most of the loss, and its gradient test
    # passed at RSS 2e-15 with the parameters 1e-4 from the minimiser (CONVERGED). The
    # trust-region Newton goes on to RSS 1e-30; the quick pass leaves the fit to it.
    start, data = np.array([3.0, -1.0, 0.0, 1.0]), np.zeros((1, 4))
    fits = jm.fit_batch(powell_singular, start, data)
    assert full_solves and full_solves[0].tolist() == [True]  # then its second fit's
    with monkeypatch.context() as patch:
        patch.setattr(_reduced, "quick_applies", lambda spec: False)
        full = jm.fit_batch(powell_singular, start, data)
    np.testing.assert_array_equal(fits.params, full.params)
    assert fits.status[0] == full.status[0] and -2 * fits.loglik[0] < 1e-25
