"""The test trinity and model comparison: Wald, score and LR agree at large n and hold their
size under the null; each against an independent computation (statsmodels, a closed form,
hand formulas); single == batch; the score test's invariance to the parameterisation;
clear errors."""

import dataclasses

import jax
import numpy as np
import pytest
import statsmodels.api as sm
from conftest import SE_RTOL
from scipy import special

import jaxmle as jm

GAMMA, EXPONENTIAL = jm.models.gamma, jm.models.exponential
NULL = {"shape": 1.0}  # the exponential inside the gamma family

# Large-n agreement under a local alternative shape = 1 + 2 / sqrt(n). The three statistics
# differ by the cubic term of the log-likelihood expansion: relative to each other by
# O(|shape_hat - 1|) = O(n^-1/2), about 0.7 |shape_hat - 1| for the gamma shape (measured:
# 1.9% at shape_hat - 1 = 0.026). 5% is twice the size of that term at this n, and far
# below the statistics' own sampling spread (their sd is ~2x their difference here).
LARGE_N = 20_000
TRINITY_RTOL = 0.05
# Size: B datasets under the null; the rejection rate at 5% must lie within 4 Monte-Carlo
# standard errors of 0.05 (the chi-squared approximation at n = 200 is part of what is
# tested: its error is well below that band for this one-parameter restriction).
SIZE_B, SIZE_N, LEVEL = 4000, 200, 0.05
SIZE_BAND = 4 * np.sqrt(LEVEL * (1 - LEVEL) / SIZE_B)
# Single and batched calls run the same arithmetic, vectorised differently: rounding only.
BATCH_RTOL = 1e-10


# Shapes are shared with the module's doctests and the batch below (n = 200) so that compiled
# fits and tests are reused.
SMALL_N = SIZE_N
PADDED = 1  # the dataset of the null batch that is padded from PAD_FROM on
PAD_FROM = 150


@pytest.fixture(scope="module")
def null_batch():
    """SIZE_B exponential datasets (one padded with values outside the support), fitted as
    exponential (restricted) and gamma (full)."""
    X = np.random.default_rng(7).exponential(2.0, size=(SIZE_B, SIZE_N))
    mask = np.ones(X.shape, bool)
    mask[PADDED, PAD_FROM:] = False
    X[PADDED, PAD_FROM:] = -1.0
    return (X, mask, jm.fit_batch(EXPONENTIAL, None, X, mask=mask),
            jm.fit_batch(GAMMA, None, X, mask=mask))


@pytest.fixture(scope="module")
def small():
    """One gamma dataset of SMALL_N and its exponential and gamma fits."""
    x = _gamma_data(1.3, SMALL_N, seed=1)
    return x, jm.fit(EXPONENTIAL, None, x), jm.fit(GAMMA, None, x)


def _gamma_data(shape, n, seed):
    return np.random.default_rng(seed).gamma(shape, 1.0 / 1.7, size=n)


def _closed_form_score(x):
    """Score statistic of exponential within gamma, by hand. Gamma(a, b):
    l = n a log b - n lgamma(a) + (a - 1) sum log x - b sum x. At the exponential MLE
    (a = 1, b = 1 / mean x) the score is (n (mean log x - log mean x - digamma(1)), 0) and the
    observed information n [[trigamma(1), -mean x], [-mean x, mean x^2]], so
    s' I^-1 s = n (mean log x - log mean x - digamma(1))^2 / (trigamma(1) - 1)."""
    n, trigamma_1 = len(x), special.polygamma(1, 1.0)
    return n * (np.log(x).mean() - np.log(x.mean()) - special.digamma(1.0)) ** 2 / (trigamma_1 - 1)


# ----- the trinity ------------------------------------------------------------------------

def test_wald_score_and_lr_agree_at_large_n_under_a_local_alternative():
    x = _gamma_data(1.0 + 2.0 / np.sqrt(LARGE_N), LARGE_N, seed=0)
    restricted, full = jm.fit(EXPONENTIAL, None, x), jm.fit(GAMMA, None, x)
    lr, lr_df, lr_p = jm.lr_test(restricted, full)
    wald, wald_df, wald_p = jm.wald_test(full, {"shape": 1.0}, 1.0)
    score, score_df, score_p = jm.score_test(GAMMA, restricted, x, fixed=NULL)
    assert lr_df == wald_df == score_df == 1
    # The statistics this test saw: lr 8.9246, wald 8.7552, score 8.7554.
    assert 5.0 < lr < 15.0  # a local alternative: neither null-sized nor overwhelming
    np.testing.assert_allclose(wald, lr, rtol=TRINITY_RTOL)
    np.testing.assert_allclose(score, lr, rtol=TRINITY_RTOL)
    np.testing.assert_allclose(score, wald, rtol=TRINITY_RTOL)
    assert max(abs(wald / lr - 1), abs(score / lr - 1)) < abs(full.params["shape"] - 1.0)
    for p in (lr_p, wald_p, score_p):
        assert 1e-3 < p < 1e-2


def test_all_three_tests_hold_their_size_under_the_null(null_batch):
    X, mask, restricted, full = null_batch
    assert restricted.converged.all() and full.converged.all()
    pvalues = {"lr": jm.lr_test(restricted, full)[2],
               "wald": jm.wald_test(full, {"shape": 1.0}, 1.0)[2],
               "score": jm.score_test(GAMMA, restricted, X, fixed=NULL, mask=mask)[2]}
    # The rates this test saw: lr 0.05025, wald 0.0480, score 0.0480 (band +-0.0138).
    for name, p in pvalues.items():
        assert p.shape == (SIZE_B,) and np.isfinite(p).all(), name
        assert abs(np.mean(p < LEVEL) - LEVEL) < SIZE_BAND, (name, np.mean(p < LEVEL))


# ----- against independent computations ---------------------------------------------------

def test_wald_test_equals_statsmodels_on_a_logistic_regression():
    rng = np.random.default_rng(3)
    n = 500
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ [0.3, 1.0, -0.5, 0.2])))).astype(float)
    fit = jm.fit(jm.models.logistic_regression, None, (X, y))
    reference = sm.Logit(y, X).fit(disp=0, tol=1e-12)
    R, q = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]), np.array([1.0, -0.2])
    expected = reference.wald_test((R, q), scalar=True, use_f=False)
    statistic, df, pvalue = jm.wald_test(fit, R, q)
    assert df == 2
    np.testing.assert_allclose(statistic, expected.statistic, rtol=SE_RTOL)
    np.testing.assert_allclose(pvalue, expected.pvalue, rtol=SE_RTOL)
    # The same restrictions by name, and one row as a (k,) vector.
    by_name = jm.wald_test(fit, [{"beta[1]": 1.0}, {"beta[2]": 1.0, "beta[3]": 1.0}], q)[0]
    np.testing.assert_allclose(by_name, statistic, rtol=1e-14)
    one_row = reference.wald_test((R[:1], q[:1]), scalar=True, use_f=False).statistic
    np.testing.assert_allclose(jm.wald_test(fit, R[0], q[0])[0], one_row, rtol=SE_RTOL)


def test_score_test_equals_the_closed_form_for_exponential_within_gamma(small, null_batch):
    x, restricted, _ = small
    expected = _closed_form_score(x)
    statistic, df, pvalue = jm.score_test(GAMMA, restricted, x, fixed=NULL)
    assert df == 1 and expected > 10.0
    np.testing.assert_allclose(statistic, expected, rtol=SE_RTOL)
    np.testing.assert_allclose(pvalue, special.chdtrc(1, expected), rtol=SE_RTOL)
    # In a padded batch: the padded dataset's statistic is that of its real observations.
    X, mask, restricted, _ = null_batch
    padded = jm.score_test(GAMMA, restricted, X, fixed=NULL, mask=mask)[0][PADDED]
    np.testing.assert_allclose(padded, _closed_form_score(X[PADDED, :PAD_FROM]), rtol=SE_RTOL)


def test_score_test_does_not_depend_on_the_parameterisation(small):
    x, restricted, _ = small
    on_log_scale = jm.score_test(GAMMA, restricted, x, fixed=NULL)[0]  # gamma: jm.positive
    # A log-density of one's own, with no constraints (the identity map), an integer value.
    def gamma(params, x):
        return jax.scipy.stats.gamma.logpdf(x, params["shape"], scale=1.0 / params["rate"])

    on_the_line = jm.score_test(gamma, restricted, x, fixed={"shape": 1})[0]
    np.testing.assert_allclose(on_log_scale, on_the_line, rtol=1e-12)

    # The naive statistic from the Hessian in the optimiser's coordinates z = log(theta)
    # carries the term sum_j s_j d2theta_j/dz2 = s_shape * shape (nonzero score): it is not
    # the score test, and differs here by several percent.
    def loglik_z(z):
        return GAMMA.log_density({"shape": jax.numpy.exp(z[0]), "rate": jax.numpy.exp(z[1])}, x).sum()

    with jax.enable_x64(True):
        z = np.log([1.0, restricted.params["rate"]])
        score, hessian = jax.jit(lambda z: (jax.grad(loglik_z)(z), jax.hessian(loglik_z)(z)))(z)
        naive = float(score @ np.linalg.solve(-hessian, score))
    assert abs(naive / on_log_scale - 1) > 0.02


def test_compare_equals_the_hand_formulas(small):
    x, exponential, gamma = small
    fits = {"exponential": exponential, "gamma": gamma,
            "lognormal": jm.fit(jm.models.lognormal, None, x)}
    c = jm.compare(fits)
    n = len(x)
    loglik = np.array([f.loglik for f in fits.values()])
    k = np.array([1, 2, 2])
    aic = 2 * k - 2 * loglik
    delta = aic - aic.min()
    weights = np.exp(-delta / 2) / np.exp(-delta / 2).sum()
    assert c.names == ("exponential", "gamma", "lognormal")
    np.testing.assert_array_equal(c.n_params, k)
    np.testing.assert_allclose(c.aic, aic, rtol=1e-14)
    np.testing.assert_allclose(c.aicc, aic + 2 * k * (k + 1) / (n - k - 1), rtol=1e-14)
    np.testing.assert_allclose(c.bic, k * np.log(n) - 2 * loglik, rtol=1e-14)
    np.testing.assert_allclose(c.delta_aic, delta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.weights, weights, rtol=1e-12)
    assert c.best == "gamma"
    # The table lists the models by increasing AIC.
    lines = str(c).splitlines()
    order = [line.split()[0] for line in lines[2:5]]
    assert order == [c.names[i] for i in np.argsort(aic)] and c.table() == str(c)


def test_compare_aicc_is_nan_when_n_is_too_small_or_unknown(small):
    _, exponential, gamma = small
    tiny = {"exponential": dataclasses.replace(exponential, n_obs=np.float64(3.0)),
            "gamma": dataclasses.replace(gamma, n_obs=np.float64(3.0))}
    c = jm.compare(tiny)
    assert np.isfinite(c.aicc[0]) and np.isnan(c.aicc[1])  # n - k - 1 = 0 for the gamma
    unknown = jm.compare({"scalar density": dataclasses.replace(gamma, n_obs=None)})
    assert np.isnan(unknown.aicc).all() and np.isnan(unknown.bic).all()
    assert np.isfinite(unknown.aic).all() and "n unknown" in str(unknown)


# ----- single == batch, failures ----------------------------------------------------------

def test_every_tool_on_a_batch_equals_the_single_calls(null_batch):
    X, mask, restricted, full = null_batch
    wald = jm.wald_test(full, [1.0, 0.0], 1.0)  # columns in fit.names order: rate, shape
    score = jm.score_test(GAMMA, restricted, X, fixed=NULL, mask=mask)
    comparison = jm.compare({"exponential": restricted, "gamma": full})
    assert full.names == ("rate", "shape") and comparison.aic.shape == (SIZE_B, 2)
    for b in (0, 17, SIZE_B - 1):
        np.testing.assert_allclose(jm.wald_test(full[b], [1.0, 0.0], 1.0)[0], wald[0][b],
                                   rtol=BATCH_RTOL)
        single = jm.score_test(GAMMA, restricted[b], X[b], fixed=NULL)
        np.testing.assert_allclose(single[0], score[0][b], rtol=BATCH_RTOL)
        np.testing.assert_allclose(single[2], score[2][b], rtol=BATCH_RTOL)
        one = jm.compare({"exponential": restricted[b], "gamma": full[b]})
        for field in ("aic", "aicc", "bic", "delta_aic", "weights"):
            np.testing.assert_allclose(getattr(one, field), getattr(comparison[b], field),
                                       rtol=1e-14, atol=1e-14)
        assert one.best == comparison.best[b]
    # The batch summary: how often each model has the lowest AIC / BIC.
    wins = np.mean(comparison.aic[:, 1] < comparison.aic[:, 0])
    text = str(comparison)
    assert f"over {SIZE_B} datasets" in text and f"{wins:.1%}" in text


def test_nan_where_a_fit_did_not_converge(null_batch):
    X, mask, restricted, full = null_batch
    status = np.zeros(SIZE_B, np.int32)
    status[5] = int(jm.Status.MAX_ITER)
    failed_restricted = dataclasses.replace(restricted, status=status)
    failed_full = dataclasses.replace(full, status=status)
    for statistic, _, pvalue in (jm.wald_test(failed_full, {"shape": 1.0}, 1.0),
                                 jm.score_test(GAMMA, failed_restricted, X, fixed=NULL, mask=mask)):
        assert np.isnan(statistic[5]) and np.isnan(pvalue[5])
        assert np.isfinite(np.delete(statistic, 5)).all()
    c = jm.compare({"exponential": failed_restricted, "gamma": full})
    assert np.isnan(c.aic[5, 0]) and c.weights[5, 1] == 1.0 and c.best[5] == "gamma"
    assert np.isnan(jm.wald_test(dataclasses.replace(full[5], status=status[5]), [0.0, 1.0])[0])


# ----- errors -----------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(null_batch):
    X, _, restricted, full = null_batch
    one = full[0]
    with pytest.raises(ValueError, match=r"shape \(r, k\) = \(r, 2\).*\['rate', 'shape'\].*got shape \(3,\)"):
        jm.wald_test(one, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"\['scale'\].*fit.names are \['rate', 'shape'\]"):
        jm.wald_test(one, {"scale": 1.0})
    with pytest.raises(ValueError, match="linearly independent"):
        jm.wald_test(one, [[1.0, 0.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match=r"q must have shape \(1,\)"):
        jm.wald_test(one, [1.0, 0.0], [1.0, 2.0])

    x, single = X[0], restricted[0]
    with pytest.raises(ValueError, match=r"fixed names \['rate'\], which are free"):
        jm.score_test(GAMMA, single, x, fixed={"rate": 1.0, "shape": 1.0})
    with pytest.raises(ValueError, match=r"fixed names \['scale'\], which log_density never reads"):
        jm.score_test(GAMMA, single, x, fixed={"shape": 1.0, "scale": 2.0})
    with pytest.raises(ValueError, match="missing from both"):
        jm.score_test(GAMMA, single, x, fixed={"scale": 1.0})
    with pytest.raises(ValueError, match=r"fixed\[shape\].*outside the support"):
        jm.score_test(GAMMA, single, x, fixed={"shape": -1.0})
    with pytest.raises(ValueError, match="fixed is empty"):
        jm.score_test(GAMMA, single, x, fixed={})
    with pytest.raises(ValueError, match=f"{SIZE_B} datasets but data has 10"):
        jm.score_test(GAMMA, restricted, X[:10], fixed=NULL)
    with pytest.raises(ValueError, match="mask is for a batched"):
        jm.score_test(GAMMA, single, x, fixed=NULL, mask=np.ones(SIZE_N, bool))

    with pytest.raises(ValueError, match="same number of datasets"):
        jm.compare({"exponential": restricted, "gamma": full[:10]})
    with pytest.raises(ValueError, match="same number of datasets"):
        jm.compare({"exponential": restricted, "gamma": one})
    with pytest.raises(ValueError, match="numbers of observations differ"):
        jm.compare({"exponential": jm.fit(EXPONENTIAL, None, x[:100]), "gamma": one})
    with pytest.raises(TypeError, match="mapping"):
        jm.compare([one])
