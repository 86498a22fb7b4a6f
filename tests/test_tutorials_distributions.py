"""The distribution tutorials (examples/coin.py, normal_surface.py, multinomial_die.py,
closed_form_table.py, map_vs_mle.py) in a small mode, checked against closed forms computed
here with numpy/scipy, and their plots written to ``tmp_path``.

Tolerances: estimates ESTIMATE_RTOL and standard errors SE_RTOL (see conftest). Quantities
that are the same float64 formula evaluated in a different order (a log-likelihood summed
over a grid or over observations) agree to LOGLIK_RTOL: a few hundred to 10^5 terms summed
in float64 accumulate rounding of ~n * 1e-16 relative at worst.
"""

import math

import numpy as np
import pytest
from conftest import ESTIMATE_RTOL, SE_RTOL, load_example
from scipy import stats

import jaxmle as jm

LOGLIK_RTOL = 1e-10
Z95 = stats.norm.ppf(0.975)


def assert_pngs(directory, *names):
    for name in names:
        path = directory / name
        assert path.is_file() and path.stat().st_size > 0, path


def test_coin(tmp_path):
    r = load_example("coin").main(out=tmp_path)
    p, n = 0.73, 100
    se = math.sqrt(p * (1 - p) / n)
    assert r["converged"]
    np.testing.assert_allclose(r["p"], p, rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose([r["se"], r["se_closed_form"]], se, rtol=SE_RTOL)
    np.testing.assert_allclose([r["lower"], r["upper"]], [p - Z95 * se, p + Z95 * se],
                               rtol=SE_RTOL)
    # 10^5 flips: the product of probabilities underflows, the log-likelihood does not.
    big_n, big_heads = 100_000, 73_000
    assert (r["big_n"], r["big_heads"]) == (big_n, big_heads)
    assert r["big_product"] == 0.0
    loglik = big_heads * math.log(p) + (big_n - big_heads) * math.log(1 - p)
    np.testing.assert_allclose([r["big_loglik"], r["big_fit_loglik"]], loglik, rtol=LOGLIK_RTOL)
    assert r["big_converged"]
    np.testing.assert_allclose(r["big_p"], p, rtol=ESTIMATE_RTOL)
    assert_pngs(tmp_path, "coin_likelihood.png")


def test_coin_prints_numbers_without_matplotlib(monkeypatch, tmp_path, capsys):
    module = load_example("coin")
    monkeypatch.setattr(module._plots, "pyplot", lambda: None)
    r = module.main(out=tmp_path)
    np.testing.assert_allclose(r["p"], 0.73, rtol=ESTIMATE_RTOL)
    assert r["big_product"] == 0.0
    assert "p = 0.730000" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


@pytest.mark.heavy
def test_normal_surface(tmp_path):
    sizes, datasets = (5, 50), 256
    module = load_example("normal_surface")
    r = module.main(n=200, grid=41, sizes=sizes, datasets=datasets, out=tmp_path)
    x, n = r["x"], len(r["x"])
    assert r["converged"]
    np.testing.assert_allclose([r["mu"], r["sigma"]], [x.mean(), x.std()], rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose([r["se"]["mu"], r["se"]["sigma"]],
                               [x.std() / math.sqrt(n), x.std() / math.sqrt(2 * n)], rtol=SE_RTOL)

    # The vmapped surface equals scipy's log-density summed over the observations.
    mu, sigma = r["mu_grid"], r["sigma_grid"]
    expected = stats.norm.logpdf(x, mu[None, :, None], sigma[:, None, None]).sum(axis=-1)
    np.testing.assert_allclose(r["surface"], expected, rtol=LOGLIK_RTOL)
    row, col = np.unravel_index(np.argmax(expected), expected.shape)
    assert abs(mu[col] - r["mu"]) <= mu[1] - mu[0]
    assert abs(sigma[row] - r["sigma"]) <= sigma[1] - sigma[0]
    assert r["loglik"] >= expected.max()

    # Variance bias: n sigma_hat^2 / sigma^2 ~ chi^2_{n-1}, so sigma_hat^2 / sigma^2 has mean
    # (n - 1) / n and variance 2 (n - 1) / n^2; the fixed-seed Monte Carlo mean lies within
    # 5 of its standard errors of (n - 1) / n.
    true_var = module.SIGMA**2
    assert [row["n"] for row in r["table"]] == list(sizes)
    for row in r["table"]:
        size, samples = row["n"], row["samples"]
        assert samples.shape == (datasets, size)
        assert row["converged"] == 1.0
        np.testing.assert_allclose(row["sigma"], samples.std(axis=1), rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(row["mle"], samples.var(axis=1).mean() / true_var,
                                   rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(row["unbiased"], samples.var(axis=1, ddof=1).mean() / true_var,
                                   rtol=ESTIMATE_RTOL)
        assert row["expected"] == (size - 1) / size
        monte_carlo_se = math.sqrt(2 * (size - 1) / size**2 / datasets)
        assert abs(row["mle"] - (size - 1) / size) < 5 * monte_carlo_se
        assert abs(row["unbiased"] - 1.0) < 5 * monte_carlo_se * size / (size - 1)
    assert_pngs(tmp_path, "normal_surface.png", "variance_bias.png")


def test_multinomial_die(tmp_path):
    # A grid step that does not hold the proportions count/100 exactly, so the grid's best
    # point is a genuine neighbour of the MLE.
    step = 0.003
    r = load_example("multinomial_die").main(step=step, out=tmp_path)
    n = len(r["rolls"])
    counts = np.bincount(r["rolls"].astype(int), minlength=3)
    p = counts / n
    assert r["converged"] and counts.sum() == n == 100
    np.testing.assert_array_equal(r["counts"], counts)
    np.testing.assert_allclose(r["probs"], p, rtol=ESTIMATE_RTOL)
    np.testing.assert_allclose(r["se"], np.sqrt(p * (1 - p) / n), rtol=SE_RTOL)
    loglik = float(counts @ np.log(p))
    np.testing.assert_allclose(r["loglik"], loglik, rtol=LOGLIK_RTOL)
    # The grid search: its best point is within one step of the MLE and no better than it.
    best = r["grid_best"]
    np.testing.assert_allclose(best.sum(), 1.0, rtol=1e-15)
    assert np.max(np.abs(best - p)) <= step
    np.testing.assert_allclose(r["grid_loglik"], counts @ np.log(best), rtol=LOGLIK_RTOL)
    assert r["loglik"] >= r["grid_loglik"]
    assert_pngs(tmp_path, "multinomial_die.png")


def _closed_forms(label, x):
    """(estimates, standard errors) in the order of ``fit.names``, with numpy."""
    if label == "dice":
        p = np.bincount(x.astype(int), minlength=6) / len(x)
        return p, np.sqrt(p * (1 - p) / len(x))
    if label == "heights (cm)":
        return [x.mean(), x.std()], [x.std() / np.sqrt(len(x)), x.std() / np.sqrt(2 * len(x))]
    if label == "counts":
        return [x.mean()], [np.sqrt(x.mean() / len(x))]
    if label == "binomial":
        k, trials = x
        p = k.sum() / trials.sum()
        return [p], [np.sqrt(p * (1 - p) / trials.sum())]
    if label == "waiting times":
        return [1 / x.mean()], [1 / x.mean() / np.sqrt(len(x))]
    if label == "geometric":
        p = 1 / x.mean()
        return [p], [p * np.sqrt((1 - p) / len(x))]
    raise AssertionError(f"no closed form in the test for {label!r}")


@pytest.mark.heavy
def test_closed_form_table():
    n = 200
    r = load_example("closed_form_table").main(n=n, neutral=False)
    rows = r["rows"]
    assert [row["data"] for row in rows].count("dice") == 6 and len(rows) == 12
    for label, x in r["data"].items():
        estimates, ses = _closed_forms(label, x)
        table = [row for row in rows if row["data"] == label]
        assert len(table) == len(estimates)
        for row, estimate, se in zip(table, estimates, ses):
            assert row["converged"], row
            assert row["rel_diff"] <= ESTIMATE_RTOL, row
            np.testing.assert_allclose(row["estimate"], estimate, rtol=ESTIMATE_RTOL)
            np.testing.assert_allclose(row["closed_form"], estimate, rtol=ESTIMATE_RTOL)
            np.testing.assert_allclose([row["se"], row["closed_form_se"]], se, rtol=SE_RTOL)
    # The simulated data follow each model's conventions.
    assert set(np.unique(r["data"]["dice"])) <= set(range(6))
    assert np.all(r["data"]["geometric"] >= 1)
    k, trials = r["data"]["binomial"]
    assert np.all(trials == 10) and np.all((0 <= k) & (k <= trials))


def test_map_vs_mle(tmp_path):
    heads, flips, a, b = 3, 3, 2.0, 2.0
    r = load_example("map_vs_mle").main(heads=heads, flips=flips, a=a, b=b, out=tmp_path)
    # All heads: the likelihood increases up to p = 1, the fit says BOUNDARY.
    assert r["mle_status"] == jm.Status.BOUNDARY and not r["mle_converged"]
    assert 1.0 - r["mle_p"] < 1e-6
    # Beta(a, b) prior: the posterior is Beta(h + a, t + b), its mode (h + a - 1) / (n + a + b - 2)
    # and the inverse curvature of its log-density there the MAP's variance.
    tails = flips - heads
    mode = (heads + a - 1) / (flips + a + b - 2)
    assert mode == pytest.approx(0.8, rel=1e-15)
    assert r["map_converged"]
    np.testing.assert_allclose([r["map_p"], r["map_expected"]], mode, rtol=ESTIMATE_RTOL)
    curvature = (heads + a - 1) / mode**2 + (tails + b - 1) / (1 - mode) ** 2
    np.testing.assert_allclose(r["map_se"], 1 / math.sqrt(curvature), rtol=SE_RTOL)
    # loglik is the log-likelihood at the MAP, without the prior.
    loglik = heads * math.log(mode) + tails * math.log1p(-mode)
    np.testing.assert_allclose(r["map_loglik"], loglik, rtol=LOGLIK_RTOL)
    assert_pngs(tmp_path, "map_vs_mle.png")
