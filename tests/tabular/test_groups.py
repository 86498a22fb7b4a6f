"""fit_groups: long-format data -> padded buckets -> per-group fits, nothing lost.

Few compiled shapes: most tests use 16 groups of 17..32 rows (one bucket of length 32, one
block of 16 groups), which is also the shape of the fit_batch they are compared with.
"""

import sys

import numpy as np
import pytest

import jaxmle as jm
from conftest import ESTIMATE_RTOL
from jaxmle.tabular import _groups

GROUPS = 16


def long_table(seed=0, groups=GROUPS, low=17, high=33, mean=5.0):
    """Rows of ``groups`` Normal groups (string labels, shuffled rows) and their sizes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high, size=groups)
    labels = np.repeat(np.array([f"g{i:02d}" for i in range(groups)], dtype=object), sizes)
    values = rng.normal(np.repeat(mean + rng.normal(size=groups), sizes), 1.0)
    shuffle = rng.permutation(values.size)
    return values[shuffle], labels[shuffle]


def padded(values, labels):
    """The groups as a (G, 32) batch with a mask, in sorted label order, for fit_batch."""
    names = np.unique(labels)
    X, mask = np.zeros((names.size, 32)), np.zeros((names.size, 32), bool)
    for i, name in enumerate(names):
        rows = values[labels == name]
        X[i, :rows.size], mask[i, :rows.size] = rows, True
    return X, mask


@pytest.fixture(scope="module")
def normal_groups():
    values, labels = long_table()
    return values, labels, jm.fit_groups(jm.models.normal, None, values, labels)


def test_groups_equal_fit_batch_and_the_closed_form(normal_groups):
    values, labels, fits = normal_groups
    X, mask = padded(values, labels)
    batch = jm.fit_batch(jm.models.normal, None, X, mask=mask)
    assert fits.labels.tolist() == [f"g{i:02d}" for i in range(GROUPS)]
    for key in ("mu", "sigma"):
        np.testing.assert_array_equal(fits.fit.params[key], batch.params[key])
        np.testing.assert_array_equal(fits.fit.se[key], batch.se[key])
    np.testing.assert_array_equal(fits.fit.status, batch.status)
    for i, label in enumerate(fits.labels):
        rows = values[labels == label]
        np.testing.assert_allclose(fits.fit.params["mu"][i], rows.mean(), rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(fits.fit.params["sigma"][i], rows.std(), rtol=ESTIMATE_RTOL)
        assert fits.n_rows[i] == fits.fit.n_obs[i] == rows.size
    assert not fits.n_excluded.any()


@pytest.mark.heavy
def test_sorted_input_and_small_chunks_give_the_same_results(normal_groups):
    values, labels, fits = normal_groups
    order = np.argsort(labels, kind="stable")  # already grouped: no sort inside
    assert _groups.GroupedRows.build(values[order], labels[order]).order is None
    calls = []
    chunked = jm.fit_groups(jm.models.normal, None, values[order], labels[order], chunk_groups=8,
                            progress=lambda done, total: calls.append((done, total)))
    # A callable progress hears the running count after each block, ending at every group.
    assert len(calls) >= GROUPS // 8 and calls[-1] == (GROUPS, GROUPS)
    assert all(total == GROUPS for _, total in calls)
    assert all(a < b for (a, _), (b, _) in zip(calls, calls[1:]))
    np.testing.assert_array_equal(chunked.labels, fits.labels)
    np.testing.assert_array_equal(chunked.fit.params["mu"], fits.fit.params["mu"])
    np.testing.assert_array_equal(chunked.fit.loglik, fits.fit.loglik)


def test_bucket_lengths_round_up_and_merge_small_buckets():
    few = _groups.bucket_lengths([0, 1, 16, 17, 32, 33, 1000])
    assert few.tolist() == [1024] * 7  # a few groups: one shape, not four
    many = np.concatenate([np.full(10, 5), np.full(100, 40), np.full(70_000, 200), [600]])
    lengths = _groups.bucket_lengths(many)
    # The groups of 5 (16) join those of 40 (64), which join those of 200 (256); 70,000 x
    # 1,024 padded observations are too many to join the one group of 600.
    assert dict(zip(*np.unique(lengths, return_counts=True))) == {256: 70_110, 1024: 1}


def test_chunks_and_blocks_hold_each_group_once():
    rng = np.random.default_rng(3)
    sizes = np.array([3, 40, 17, 500, 16, 33, 64, 65, 2])
    labels = np.repeat(np.arange(sizes.size) * 10, sizes)
    values = rng.normal(size=labels.size)
    values[rng.random(values.size) < 0.1] = np.nan
    rows = _groups.GroupedRows.build(values, labels)
    chunks = rows.chunks(2)
    members = np.concatenate([chunk.members for chunk in chunks])
    assert sorted(members.tolist()) == list(range(sizes.size))  # every group exactly once
    for chunk in chunks:
        assert chunk.length == 512 and chunk.members.size <= 2 and chunk.block == 2
        block = rows.block(chunk.members, chunk.length)
        for slot, group in enumerate(chunk.members):
            original = values[labels == group * 10]
            np.testing.assert_array_equal(block.data[slot][block.mask[slot]],
                                          original[np.isfinite(original)])


@pytest.mark.heavy
def test_small_groups_join_the_longer_bucket_and_match_the_closed_form(normal_groups):
    values, labels, _ = normal_groups
    rng = np.random.default_rng(4)
    small = rng.normal(-2.0, 0.5, size=14)           # two groups of 5 and 9 rows
    values = np.concatenate([values, small])
    labels = np.concatenate([labels, np.array(["a"] * 5 + ["b"] * 9, dtype=object)])
    fits = jm.fit_groups(jm.models.normal, None, values, labels)
    assert fits.fit.converged.all() and len(fits) == GROUPS + 2
    for i, label in enumerate(fits.labels):
        rows = values[labels == label]
        np.testing.assert_allclose(fits.fit.params["mu"][i], rows.mean(), rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(fits.fit.params["sigma"][i], rows.std(), rtol=ESTIMATE_RTOL)


@pytest.mark.heavy
def test_group_problems_leave_the_other_groups_bit_identical():
    values, labels = long_table(seed=1)  # positive values: a Gamma model
    # A 17th group, emptied below; both runs then have one block of 17 groups of 32.
    values = np.concatenate([values, [4.0, 5.0, 7.0]])
    labels = np.concatenate([labels, np.array(["empty"] * 3, dtype=object)])
    clean = jm.fit_groups(jm.models.gamma, None, values, labels)
    values = values.copy()
    nan_rows = np.flatnonzero(labels == "g03")[::3]
    values[nan_rows] = np.nan                                   # rows excluded and counted
    values[np.flatnonzero(labels == "g05")[0]] = -1.0           # log-likelihood -inf at the start
    values[labels == "empty"] = [np.nan, np.inf, -np.inf]        # no usable row
    keep = np.ones(values.size, bool)
    keep[np.flatnonzero(labels == "g07")[1:]] = False           # one observation left
    values, labels = values[keep], labels[keep]
    hurt = jm.fit_groups(jm.models.gamma, None, values, labels)

    assert len(hurt) == GROUPS + 1 and clean.fit.converged.all()
    status = dict(zip(hurt.labels, (jm.Status(s) for s in hurt.fit.status)))
    assert status["g03"] == jm.Status.CONVERGED
    assert status["g05"] == jm.Status.NONFINITE_START
    assert status["g07"] == jm.Status.TOO_FEW_OBSERVATIONS
    assert status["empty"] == jm.Status.TOO_FEW_OBSERVATIONS
    excluded = dict(zip(hurt.labels, hurt.n_excluded))
    assert excluded["g03"] == nan_rows.size and excluded["empty"] == 3
    assert sum(excluded.values()) == nan_rows.size + 3
    np.testing.assert_array_equal(hurt.labels, clean.labels)

    others = ~np.isin(clean.labels, ["g03", "g05", "g07", "empty"])
    for key in ("shape", "rate"):
        np.testing.assert_array_equal(hurt.fit.params[key][others], clean.fit.params[key][others])
        np.testing.assert_array_equal(hurt.fit.se[key][others], clean.fit.se[key][others])
    np.testing.assert_array_equal(hurt.fit.n_iter[others], clean.fit.n_iter[others])


def test_covariates_with_an_intercept_equal_least_squares():
    rng = np.random.default_rng(5)
    sizes = rng.integers(17, 33, size=4)
    labels = np.repeat(np.arange(4), sizes)
    x = rng.normal(size=labels.size)
    y = 1.0 + np.repeat([0.5, -1.0, 2.0, 0.0], sizes) * x + rng.normal(size=labels.size)
    fits = jm.fit_groups(jm.models.linear_regression, None, y, labels, x=x, intercept=True)
    assert fits.fit.names == ("beta[0]", "beta[1]", "sigma")
    for g in range(4):
        X = np.column_stack([np.ones(sizes[g]), x[labels == g]])
        beta, rss, *_ = np.linalg.lstsq(X, y[labels == g], rcond=None)
        np.testing.assert_allclose(fits.fit.params["beta"][g], beta, rtol=ESTIMATE_RTOL)
        np.testing.assert_allclose(fits.fit.params["sigma"][g], np.sqrt(rss[0] / sizes[g]),
                                   rtol=ESTIMATE_RTOL)


def test_to_dataframe_rows_and_columns(normal_groups):
    _, _, fits = normal_groups
    frame = fits.to_dataframe(0.9, group="store")
    assert list(frame.columns) == [
        "store", "mu", "mu_se", "mu_lower", "mu_upper", "sigma", "sigma_se", "sigma_lower",
        "sigma_upper", "loglik", "aic", "bic", "n_obs", "n_iter", "converged", "status",
        "n_rows", "n_excluded"]
    assert frame["store"].tolist() == fits.labels.tolist()
    lower, upper = fits.fit.conf_int(0.9)
    np.testing.assert_array_equal(frame["sigma_lower"], lower["sigma"])
    np.testing.assert_array_equal(frame["mu_upper"], upper["mu"])
    np.testing.assert_array_equal(frame["bic"], fits.fit.bic)
    assert frame["status"].tolist() == ["CONVERGED"] * GROUPS
    one = fits.fit[2].to_dataframe()  # a single fit: one row
    assert len(one) == 1 and one["mu"][0] == fits.fit.params["mu"][2]
    assert one["mu_se"][0] == fits.fit.se["mu"][2] and one.attrs["level"] == 0.95


def test_dataframes_without_pandas_say_how_to_install_it(normal_groups, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'jaxmle\[pandas\]'"):
        normal_groups[2].to_dataframe()


@pytest.mark.parametrize("values, labels, error, words", [
    ([1.0, 2.0], ["a", None], ValueError, "missing group label"),
    ([1.0, 2.0], [1.0, np.nan], ValueError, "missing group label"),
    ([1.0, 2.0, 3.0], ["a", "b"], ValueError, "3 rows but groups has 2"),
    (["x", "y"], ["a", "b"], TypeError, "values must be numeric"),
    ([1.0, 2.0], np.array(["a", 1], dtype=object), TypeError, "comparable"),
])
def test_bad_inputs_raise_clear_errors(values, labels, error, words):
    with pytest.raises(error, match=words):
        jm.fit_groups(jm.models.normal, None, values, np.asarray(labels, dtype=object))
