"""The second fit where Newton fails (``core/_retry``): when it runs, and what it replaces."""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np

import jaxmle as jm
from conftest import load_example
from jaxmle.core import _engine, _retry

HARD = load_example("hard_problems", "benchmarks")
CONVERGED = int(jm.Status.CONVERGED)


def _beale():
    (case,) = [c for c in HARD.cases(names={"Beale"}) if c.start == "1x"]
    return case


def _density(case):
    return lambda p, data: -0.5 * case.residuals(p["x"]) ** 2


def test_a_single_fit_is_bfgs_then_newton_from_where_bfgs_stopped(monkeypatch):
    # Beale from 10x its start: Newton's path runs off along a valley towards infinity.
    case = _beale()
    density, init, data = _density(case), {"x": 10 * case.x0}, np.zeros(case.m)
    fit = jm.fit(density, init, data)
    bfgs = jm.fit(density, init, data, method="bfgs")
    polished = jm.fit(density, bfgs.params, data)
    assert fit.status == CONVERGED and polished.status == CONVERGED
    np.testing.assert_array_equal(fit.params["x"], polished.params["x"])
    assert fit.n_iter == bfgs.n_iter + polished.n_iter
    np.testing.assert_allclose(fit.params["x"], case.x_min, rtol=1e-9)
    monkeypatch.setattr(_retry, "applies", lambda spec: False)
    assert jm.fit(density, init, data).status != CONVERGED


def _gaussian_rows(scales):
    """MGH Gaussian from ``scales`` x its start, one dataset per start: the start rides in
    the data (a data-driven init), the residuals ignore it."""
    (case,) = [c for c in HARD.cases(names={"Gaussian"}) if c.start == "1x"]
    starts = np.stack([scale * case.x0 for scale in scales])
    data = np.concatenate([starts, np.zeros((len(scales), case.m - 3))], axis=1)
    return _density(case), (lambda d: {"x": d[:3]}), data


def test_a_batch_fits_again_only_the_datasets_newton_failed(monkeypatch, full_solve_only):
    # Newton from 100x ends at a singular Hessian (RSS 0.28 against 1.1e-8); from 1x it
    # converges.
    density, init, data = _gaussian_rows([1, 100, 1])
    fits = jm.fit_batch(density, init, data)
    single = jm.fit(density, init, data[1])
    monkeypatch.setattr(_retry, "applies", lambda spec: False)
    first = jm.fit_batch(density, init, data)
    assert first.status.tolist() == [CONVERGED, int(jm.Status.SINGULAR_HESSIAN), CONVERGED]
    assert np.all(fits.status == CONVERGED) and single.status == CONVERGED
    for row in (0, 2):
        np.testing.assert_array_equal(fits[row].params["x"], first[row].params["x"])
        assert fits.n_iter[row] == first.n_iter[row]
    # The same minimum as the 1x start's and the single fit's (the batch's Newton stage
    # runs in lanes: the last digits may differ).
    np.testing.assert_allclose(fits.params["x"][1], fits.params["x"][0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fits.params["x"][1], single.params["x"], rtol=1e-7, atol=1e-9)
    assert np.isfinite(fits.se["x"]).all()


def test_a_batch_keeps_a_boundary_without_a_second_fit(caplog, compiles_logged):
    # Separation in a logistic regression: BOUNDARY, the data's verdict. A single fit
    # retries a BOUNDARY (Beale above); a batch does not (it would cost every call a BFGS
    # fit of those rows): one program compiled, the statuses Newton's.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, 40, 2))
    y = (rng.uniform(size=(4, 40)) < 0.5).astype(float)
    y[:2] = X[:2, :, 1] > 0
    def logistic(beta, data):
        X, y = data
        eta = X @ beta
        return y * eta - jnp.logaddexp(0.0, eta)
    with caplog.at_level(logging.WARNING):
        fits = jm.fit_batch(logistic, np.zeros(2), (X, y))
    solves = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("Compiling jit(_solve_batch)")]
    assert len(solves) == 1
    assert fits.status.tolist() == [int(jm.Status.BOUNDARY)] * 2 + [CONVERGED] * 2


def test_a_stream_fits_again_as_a_batch_does():
    density, init, data = _gaussian_rows([1, 100, 100, 1])
    whole = jm.fit_batch(density, init, data)
    streamed = jm.concat_fits(jm.fit_stream(density, init, (data[:2], data[2:]), block_size=2))
    np.testing.assert_array_equal(streamed.status, whole.status)
    assert np.all(streamed.status == CONVERGED)
    np.testing.assert_allclose(streamed.params["x"], whole.params["x"], rtol=1e-12, atol=1e-15)


def test_a_batch_compiles_only_the_bfgs_stage_for_its_second_fits(caplog, compiles_logged,
                                                                  full_solve_only):
    # The Newton stage reruns the batch's own solve (same layout, the data-driven start
    # replaced by the BFGS ends): one more program, not two. (A density of its own: no
    # program of another test is reused.)
    density, init, data = _gaussian_rows([1, 100, 1])
    with caplog.at_level(logging.WARNING):
        fits = jm.fit_batch(density, init, data)
    solves = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("Compiling jit(_solve_batch)")]
    assert len(solves) == 2 and np.all(fits.status == CONVERGED)


def test_a_cap_the_user_chose_is_not_retried():
    case = _beale()
    fit = jm.fit(_density(case), {"x": 10 * case.x0}, np.zeros(case.m), max_iter=20)
    assert fit.status == jm.Status.MAX_ITER and fit.n_iter == 20


def test_the_second_fit_must_be_converged_and_gain_beyond_the_stopping_tolerance():
    x = np.random.default_rng(0).normal(size=(4, 30))
    fits = jm.fit_batch(jm.models.normal, None, x)
    first = dataclasses.replace(fits, loglik=np.array([-10.0, -10.0, np.nan, -10.0]),
                                status=np.full(4, int(jm.Status.BOUNDARY), np.int32))
    second = dataclasses.replace(fits, loglik=np.array([-10.0 + 5e-8, -9.0, -5.0, -9.0]),
                                 status=np.array([CONVERGED] * 3 + [int(jm.Status.STALLED)],
                                                 np.int32))
    # gtol 1e-10: gains below 100 * 1e-10 * 10 = 1e-7 are within the first fit's tolerance.
    taken = _retry.improves(first.loglik, second.status, second.loglik, 1e-10)
    np.testing.assert_array_equal(taken, [False, True, True, False])
    rows = np.flatnonzero(taken)
    chosen = _retry.replace_rows(first, rows, jax.tree_util.tree_map(lambda leaf: leaf[rows],
                                                                    second))
    np.testing.assert_array_equal(chosen.loglik, [-10.0, -9.0, -5.0, -10.0])
    np.testing.assert_array_equal(chosen.status, [int(jm.Status.BOUNDARY), CONVERGED, CONVERGED,
                                                  int(jm.Status.BOUNDARY)])
    # A copy: the first fit is left as it was.
    np.testing.assert_array_equal(first.loglik, [-10.0, -10.0, np.nan, -10.0])


def test_the_bfgs_stage_has_bfgs_s_default_cap():
    assert _retry.PRELUDE_MAX_ITER == _engine.DEFAULT_MAX_ITER["bfgs"]


def test_a_single_fit_at_a_supremum_at_infinity_stays_a_boundary(monkeypatch):
    # Negative binomials fitted to Poisson counts (no overdispersion): the likelihood rises
    # towards the Poisson's as size -> infinity and Newton stops BOUNDARY near it. A second
    # fit may run on to a size of 1e13, where the likelihood is flat to rounding and the
    # certification passes: without the margin it would replace the BOUNDARY. Which of the
    # 24 datasets it does so for moves with the last bits of the arithmetic.
    counts = np.random.default_rng(6).poisson(4.0, size=(24, 100)).astype(float)
    fits = lambda: [jm.fit(jm.models.negative_binomial, None, row) for row in counts]
    kept = fits()
    monkeypatch.setattr(_retry, "GAIN", 0.0)
    flat = [i for i, fit in enumerate(fits())
            if fit.status == CONVERGED and fit.params["size"] > 1e12]
    assert flat
    assert all(kept[i].status == jm.Status.BOUNDARY and kept[i].params["size"] > 1e6
               for i in flat)


def test_a_batch_retries_the_boundary_of_a_dataset_fitted_with_a_single_fit_s_budget(
        monkeypatch):
    # Beale from 10x its start: Newton's path runs off along a valley and reaches BOUNDARY
    # after about 1,500 iterations, past the batch's cap. Fitted again with the single
    # fit's cap, the dataset is retried as a single fit is, BOUNDARY included, and its second
    # fit reaches the minimum; a BOUNDARY within the batch's cap (separation, above) is not.
    case = _beale()
    density, init, data = _density(case), {"x": 10 * case.x0}, np.zeros((1, case.m))
    fit = jm.fit_batch(density, init, data)
    assert fit.status[0] == CONVERGED
    np.testing.assert_allclose(fit.params["x"][0], case.x_min, rtol=1e-9)
    batch_rule = _retry.batch  # BOUNDARY retried in no dataset of a batch
    monkeypatch.setattr(_retry, "batch",
                        lambda *args, as_single, **kwargs: batch_rule(*args, **kwargs))
    assert jm.fit_batch(density, init, data).status[0] == jm.Status.BOUNDARY
