"""fit_batch: equals a loop of fit, ragged masks, failures isolated per dataset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import jaxmle as jm
from jaxmle.batch import _batch
from models import CASES, simulate

NORMAL = CASES["normal"]
EXPONENTIAL = CASES["exponential"]
# Batched and single fits run the same iterations with different summation order (vmap
# vs. no vmap): estimates agree to the solver tolerance, not bit for bit.
LOOP_RTOL = 1e-9


def _normal_batch(x, **options):
    return jm.fit_batch(NORMAL.log_density, NORMAL.init, x, constraints=NORMAL.constraints, **options)


def test_batch_equals_loop_of_single_fits():
    x = simulate("normal", batch=12, seed=5)
    many = _normal_batch(x)
    for b in range(len(many)):
        one = jm.fit(NORMAL.log_density, NORMAL.init, x[b], constraints=NORMAL.constraints)
        for key in ("mu", "sigma"):
            np.testing.assert_allclose(many[b].params[key], one.params[key], rtol=LOOP_RTOL)
            np.testing.assert_allclose(many[b].se[key], one.se[key], rtol=LOOP_RTOL)
        np.testing.assert_allclose(many[b].loglik, one.loglik, rtol=1e-12)
        assert int(many[b].status) == int(one.status)


def test_nan_dataset_is_flagged_and_leaves_others_bit_identical():
    x = simulate("normal", batch=40, seed=6)
    clean = _normal_batch(x, chunk_size=16)
    poisoned_x = x.copy()
    poisoned_x[7, 3] = np.nan
    poisoned = _normal_batch(poisoned_x, chunk_size=16)
    assert poisoned[7].status == jm.Status.INVALID_DATA
    assert not poisoned.converged[7]
    others = np.arange(40) != 7
    for field in ("loglik", "status", "n_iter", "grad_norm", "cov"):
        assert np.array_equal(getattr(poisoned, field)[others], getattr(clean, field)[others]), field
    for key in ("mu", "sigma"):
        assert np.array_equal(poisoned.params[key][others], clean.params[key][others])
        assert np.array_equal(poisoned.se[key][others], clean.se[key][others])


@pytest.mark.heavy
def test_ragged_mask_equals_individual_fits_even_with_padding_outside_support():
    rng = np.random.default_rng(7)
    lengths = np.array([200, 3, 57, 120, 199, 10])
    x = rng.exponential(0.4, size=(len(lengths), 200))
    mask = np.arange(200)[None, :] < lengths[:, None]
    x[~mask] = -5.0  # outside the support: log-density terms there would be invalid
    many = jm.fit_batch(lambda p, x: stats.expon.logpdf(x, scale=1 / p["rate"]),
                        EXPONENTIAL.init, x, mask=mask, constraints=EXPONENTIAL.constraints)
    assert many.converged.all()
    np.testing.assert_array_equal(many.n_obs, lengths)
    for b, n in enumerate(lengths):
        one = jm.fit(lambda p, x: stats.expon.logpdf(x, scale=1 / p["rate"]),
                     EXPONENTIAL.init, x[b, :n], constraints=EXPONENTIAL.constraints)
        np.testing.assert_allclose(many[b].params["rate"], 1 / x[b, :n].mean(), rtol=1e-9)
        np.testing.assert_allclose(many[b].params["rate"], one.params["rate"], rtol=LOOP_RTOL)
        np.testing.assert_allclose(many[b].se["rate"], one.se["rate"], rtol=LOOP_RTOL)
        np.testing.assert_allclose(many[b].loglik, one.loglik, rtol=1e-12)


def test_per_dataset_failures_get_their_own_status():
    rng = np.random.default_rng(8)
    x = rng.exponential(0.4, size=(5, 50))
    mask = np.ones_like(x, dtype=bool)
    mask[1, 1:] = False   # one observation: enough for the 1-parameter exponential
    mask[2, :] = False    # no observation at all
    x[3] = -1.0           # log-likelihood -inf everywhere at the start
    x[4, 10] = np.nan     # NaN in an active observation
    many = jm.fit_batch(lambda p, x: stats.expon.logpdf(x, scale=1 / p["rate"]),
                        EXPONENTIAL.init, x, mask=mask, constraints=EXPONENTIAL.constraints)
    assert [jm.Status(int(s)) for s in many.status] == [
        jm.Status.CONVERGED, jm.Status.CONVERGED, jm.Status.TOO_FEW_OBSERVATIONS,
        jm.Status.NONFINITE_START, jm.Status.INVALID_DATA]
    np.testing.assert_allclose(many[1].params["rate"], 1 / x[1, 0], rtol=1e-9)
    # Datasets stopped before the solve (no or bad data) stay at the start, without SEs.
    for b in (2, 4):
        assert many[b].params["rate"] == EXPONENTIAL.init["rate"] and many[b].n_iter == 0
        assert np.isnan(many[b].se["rate"])


def test_too_few_observations_for_two_parameters():
    x = simulate("normal", batch=3, seed=9)[:, :20]
    mask = np.ones_like(x, dtype=bool)
    mask[0, 1:] = False
    many = _normal_batch(x, mask=mask)
    assert many[0].status == jm.Status.TOO_FEW_OBSERVATIONS
    assert many.converged[1:].all()


def test_nan_outside_mask_is_ignored():
    x = simulate("normal", batch=2, seed=10)[:, :20].copy()
    mask = np.ones_like(x, dtype=bool)
    mask[0, -5:] = False
    x[0, -5:] = np.nan
    many = _normal_batch(x, mask=mask)
    assert many.converged.all()
    np.testing.assert_allclose(many[0].params["mu"], x[0, :-5].mean(), rtol=1e-10)


def test_batch_indexing_len_and_summary():
    x = simulate("normal", batch=12, seed=5)
    many = _normal_batch(x)
    assert len(many) == 12
    assert many[3].params["mu"].shape == ()
    assert "converged 12/12" in many.summary()
    assert "mu" in many[3].summary()
    with pytest.raises(TypeError):
        len(many[3])


def test_weights_equal_repeated_observations():
    x = np.array([0.3, 1.2, 2.5, 0.7])
    counts = np.array([2.0, 1.0, 3.0, 1.0])
    weighted = jm.fit(EXPONENTIAL.log_density, EXPONENTIAL.init, x, weights=counts,
                      constraints=EXPONENTIAL.constraints)
    repeated = jm.fit(EXPONENTIAL.log_density, EXPONENTIAL.init, np.repeat(x, counts.astype(int)),
                      constraints=EXPONENTIAL.constraints)
    np.testing.assert_allclose(weighted.params["rate"], repeated.params["rate"], rtol=1e-10)
    np.testing.assert_allclose(weighted.se["rate"], repeated.se["rate"], rtol=1e-9)
    assert weighted.n_obs == 7


def test_batch_options_match_single_fits():
    """Callable init, MAP prior, weights and the robust covariance, batched vs single."""
    x = simulate("normal", batch=6, seed=11)[:, :50]
    weights = np.random.default_rng(12).integers(1, 4, size=x.shape).astype(float)
    options = dict(constraints=NORMAL.constraints, cov="robust",
                   log_prior=lambda p: -0.5 * p["mu"] ** 2 / 100.0)
    start = lambda x: {"mu": jnp.mean(x), "sigma": jnp.std(x)}
    many = jm.fit_batch(NORMAL.log_density, start, x, weights=weights, **options)
    assert many.converged.all()
    for b in range(len(many)):
        one = jm.fit(NORMAL.log_density, start, x[b], weights=weights[b], **options)
        for key in ("mu", "sigma"):
            np.testing.assert_allclose(many[b].params[key], one.params[key], rtol=LOOP_RTOL)
            np.testing.assert_allclose(many[b].se[key], one.se[key], rtol=LOOP_RTOL)
        assert many[b].n_obs == weights[b].sum()


@pytest.mark.heavy
def test_integer_init_and_unjitted_run_agree():
    x = simulate("exponential", seed=13)[:20]
    jitted = jm.fit(EXPONENTIAL.log_density, {"rate": 1}, x, constraints=EXPONENTIAL.constraints)
    with jax.disable_jit():
        eager = jm.fit(EXPONENTIAL.log_density, {"rate": 1}, x, constraints=EXPONENTIAL.constraints)
    assert jitted.converged and eager.converged
    np.testing.assert_allclose(eager.params["rate"], jitted.params["rate"], rtol=1e-12)
    np.testing.assert_allclose(eager.se["rate"], jitted.se["rate"], rtol=1e-10)


@pytest.mark.parametrize("n_obs, n_free, bytes_per_dataset, expected", [
    (1_000, 2, 8_000, 128),       # Normal, Weibull: fastest at 128 (docs/design.md)
    (1_000, 5, 48_000, 128),      # logistic regression, k = 5: fastest at 96-128
    (1_000, 20, 168_000, 32),     # k = 20: fastest at 32
    (64_000, 2, 512_000, 4),      # long datasets: a few per chunk
    (100, 2, 800, 128),           # short ones: capped (Weibull slower at 256)
    (10**6, 3, 8 * 10**6, 1),     # one dataset fills the cache
    (None, 4, 64, 128)])          # scalar-form densities
def test_chunk_sizes_follow_the_measured_optima(n_obs, n_free, bytes_per_dataset, expected):
    assert _batch.auto_chunk_size(bytes_per_dataset, n_obs, n_free) == expected
