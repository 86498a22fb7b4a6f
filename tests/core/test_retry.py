"""The second fit where Newton fails (``core/_retry``): when it runs, and what it replaces."""

import dataclasses
import logging

import numpy as np

import jaxmle as jm
from conftest import load_example
from jaxmle.core import _retry

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


def test_a_batch_fits_again_only_the_datasets_newton_failed(monkeypatch):
    # Each dataset carries its start (a data-driven init): Beale from 1x (Newton converges)
    # and from 10x (it does not).
    case = _beale()
    starts = np.stack([case.x0, 10 * case.x0, case.x0])
    data = np.concatenate([starts, np.zeros((3, case.m - 2))], axis=1)
    density, init = _density(case), lambda d: {"x": d[:2]}
    fits = jm.fit_batch(density, init, data)
    monkeypatch.setattr(_retry, "applies", lambda spec: False)
    first = jm.fit_batch(density, init, data)
    assert first.status[0] == CONVERGED and first.status[1] != CONVERGED
    assert np.all(fits.status == CONVERGED)
    for row in (0, 2):
        np.testing.assert_array_equal(fits[row].params["x"], first[row].params["x"])
        assert fits.n_iter[row] == first.n_iter[row]
    np.testing.assert_allclose(fits.params["x"], np.broadcast_to(case.x_min, (3, 2)), rtol=1e-9)
    assert np.isfinite(fits.se["x"]).all()


def test_a_batch_compiles_only_the_bfgs_stage_for_its_second_fits(caplog, compiles_logged):
    # The Newton stage reruns the batch's own solve (same layout, the data-driven start
    # replaced by the BFGS ends): one more program, not two. (A density of its own: no
    # program of another test is reused.)
    case = _beale()
    starts = np.stack([case.x0, 10 * case.x0, case.x0])
    data = np.concatenate([starts, np.zeros((3, case.m - 2))], axis=1)
    with caplog.at_level(logging.WARNING):
        fits = jm.fit_batch(_density(case), lambda d: {"x": d[:2]}, data)
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
    chosen = _retry.better(first, second, np.ones(4, bool), 1e-10)
    np.testing.assert_array_equal(chosen.loglik, [-10.0, -9.0, -5.0, -10.0])
    np.testing.assert_array_equal(chosen.status, [int(jm.Status.BOUNDARY), CONVERGED, CONVERGED,
                                                  int(jm.Status.BOUNDARY)])
    kept = _retry.better(first, second, np.array([True, False, True, True]), 1e-10)
    np.testing.assert_array_equal(kept.loglik, [-10.0, -10.0, -5.0, -10.0])


def test_a_stream_fits_again_as_a_batch_does():
    case = _beale()
    starts = np.stack([case.x0, 10 * case.x0, 100 * case.x0, case.x0])
    data = np.concatenate([starts, np.zeros((4, case.m - 2))], axis=1)
    density, init = _density(case), lambda d: {"x": d[:2]}
    whole = jm.fit_batch(density, init, data)
    streamed = jm.concat_fits(jm.fit_stream(density, init, (data[:2], data[2:]), block_size=2))
    np.testing.assert_array_equal(streamed.status, whole.status)
    assert np.all(streamed.status == CONVERGED)
    np.testing.assert_allclose(streamed.params["x"], whole.params["x"], rtol=1e-12)
