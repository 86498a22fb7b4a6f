"""Multistart: the global optimum of a bimodal mixture likelihood, distinct optima counted,
single == batch, user starts, errors."""

import numpy as np
import pytest

import jaxmle as jm
from conftest import ESTIMATE_RTOL

MIXTURE = jm.models.gaussian_mixture(2)
# Two well-separated local optima: the outer clusters with the middle one merged into either.
LOCAL_START = {"weights": np.array([0.5, 0.5]), "mu": np.array([-4.0, 2.0]),
               "sigma": np.array([1.0, 1.0])}


def _three_clusters(seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, 0.6, s) for c, s in zip((-4, 0, 4), (100, 100, 140))])


@pytest.mark.heavy
def test_multistart_finds_the_global_optimum_that_a_single_start_misses():
    x = _three_clusters(1)
    single = jm.fit(MIXTURE, LOCAL_START, x)
    assert single.converged  # a genuine local maximum, certified as such
    ms = jm.multistart(MIXTURE, LOCAL_START, x, starts=8)
    assert ms.best.converged and ms.multimodal and ms.n_optima == 2
    assert ms.best.loglik > single.loglik + 20.0
    # The global optimum groups the middle cluster with the left one; the gap is the local
    # optimum's shortfall, measured independently by the single fit.
    np.testing.assert_allclose(ms.loglik_gap, ms.best.loglik - single.loglik, rtol=1e-9)
    assert ms.best.params["mu"][1] > 3.5 and ms.distance > 10.0
    assert ms.fits.loglik.shape == (8,) and ms.best.loglik == ms.fits.loglik.max()


def test_unimodal_likelihood_has_one_optimum():
    x = np.random.default_rng(2).normal(3.0, 2.0, 300)
    ms = jm.multistart(jm.models.normal, None, x, starts=6, spread=2.0)
    assert ms.fits.converged.all() and ms.n_optima == 1 and not ms.multimodal
    assert np.isnan(ms.loglik_gap) and np.isnan(ms.distance)
    np.testing.assert_allclose(ms.best.params["mu"], x.mean(), rtol=ESTIMATE_RTOL)


@pytest.mark.heavy
def test_batch_equals_single_and_user_starts_are_used():
    data = np.stack([_three_clusters(seed) for seed in (1, 3, 4)])
    starts = {"weights": np.full((2, 2), 0.5), "mu": np.array([[-4.0, 2.0], [-2.0, 4.0]]),
              "sigma": np.ones((2, 2))}
    batch = jm.multistart(MIXTURE, None, data, starts=starts, batched=True)
    assert batch.fits.loglik.shape == (3, 2) and batch.n_optima.shape == (3,)
    for b in range(3):
        single = jm.multistart(MIXTURE, None, data[b], starts=starts)
        np.testing.assert_allclose(batch.best[b].params["mu"], single.best.params["mu"],
                                   rtol=1e-12)
        np.testing.assert_allclose(batch.fits.loglik[b], single.fits.loglik, rtol=1e-12)
        assert batch.n_optima[b] == single.n_optima
    first = jm.fit(MIXTURE, {key: value[0] for key, value in starts.items()}, data[0])
    np.testing.assert_allclose(batch.fits.loglik[0, 0], first.loglik, rtol=1e-12)


def test_bad_starts_raise_clear_errors():
    x = _three_clusters(1)
    with pytest.raises(ValueError, match="starts must be >= 1"):
        jm.multistart(MIXTURE, None, x, starts=0)
    with pytest.raises(ValueError, match="same leading axis"):
        jm.multistart(MIXTURE, None, x, starts={"weights": np.full((2, 2), 0.5),
                                               "mu": np.array([[-1.0, 1.0]]),
                                               "sigma": np.ones((2, 2))})
    with pytest.raises(ValueError, match="must be > 0"):
        jm.multistart(MIXTURE, None, x, starts={"weights": np.full((1, 2), 0.5),
                                               "mu": np.array([[-1.0, 1.0]]),
                                               "sigma": -np.ones((1, 2))})
