"""Cluster-robust covariance (``cov="cluster"``) against statsmodels.

Two references, both statsmodels': (1) its own ``cov_type="cluster"`` result, which by
default multiplies ``G / (G - 1) A^-1 C A^-1`` by the small-sample factor
``(N - 1) / (N - K)`` (``use_correction=True``): we divide that factor out explicitly; and
(2) the sandwich assembled here from its analytic per-observation scores (``score_obs``)
and Hessian at our estimate, summed within clusters.
"""

import numpy as np
import pytest
import statsmodels.api as sm

import jaxmle as jm

N, G, K = 400, 25, 3
# statsmodels' Newton stops when parameters move by less than 1e-8: its estimate, and the
# covariance evaluated there, are within ~1e-9 relative of the exact optimum's.
STATSMODELS_RTOL = 1e-7
# The same formula from analytic derivatives at our own estimate: rounding only.
SANDWICH_RTOL = 1e-10


def _data(seed=3):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, G, N)
    effect = rng.normal(0.0, 1.0, G)[g]  # shared within a cluster: scores correlate
    X = np.column_stack([np.ones(N), rng.normal(size=(N, K - 1))])
    p = 1.0 / (1.0 + np.exp(-(X @ [0.3, 1.0, -0.5] + effect)))
    y = (rng.uniform(size=N) < p).astype(float)
    counts = rng.poisson(np.exp(X @ [0.5, 0.3, 0.2] + 0.5 * effect)).astype(float)
    return X, y, counts, g


def _sandwich(result, groups):
    model = result.model
    scores, hessian = model.score_obs(result.params), model.hessian(result.params)
    summed = np.zeros((groups.max() + 1, scores.shape[1]))
    np.add.at(summed, groups, scores)
    bread = np.linalg.inv(-hessian)
    count = np.unique(groups).size
    return count / (count - 1) * bread @ summed.T @ summed @ bread


@pytest.mark.parametrize("kind", ["logit", "poisson"])
def test_matches_statsmodels_cluster_covariance(kind):
    X, y, counts, g = _data()
    labels = np.array([f"site-{k}" for k in g], object)  # strings: any kind of label
    if kind == "logit":
        model, response, sm_model = jm.models.logistic_regression, y, sm.Logit(y, X)
    else:
        model, response, sm_model = jm.models.poisson_regression, counts, sm.Poisson(counts, X)
    fit = jm.fit(model, None, (X, response), cov="cluster", clusters=labels)
    assert fit.converged and fit.cov_kind == "cluster"

    reference = sm_model.fit(disp=0, cov_type="cluster", cov_kwds={"groups": g})
    correction = (N - 1) / (N - K)
    np.testing.assert_allclose(fit.params["beta"], reference.params, rtol=STATSMODELS_RTOL)
    np.testing.assert_allclose(fit.cov, reference.cov_params() / correction,
                               rtol=STATSMODELS_RTOL)

    at_ours = sm_model.fit(start_params=np.asarray(fit.params["beta"]), maxiter=0, disp=0,
                           warn_convergence=False)
    np.testing.assert_allclose(fit.cov, _sandwich(at_ours, g), rtol=SANDWICH_RTOL)
    # Clustering matters here: the robust (per-observation) sandwich differs.
    robust = jm.fit(model, None, (X, response), cov="robust")
    assert np.abs(np.asarray(robust.se["beta"]) / fit.se["beta"] - 1).max() > 0.1


def test_labels_of_any_kind_give_the_same_covariance():
    X, y, _, g = _data()
    numbers = jm.fit(jm.models.logistic_regression, None, (X, y), cov="cluster", clusters=g)
    objects = np.empty(N, object)
    objects[:] = [("clinic", int(k)) if k % 2 else float(k) for k in g]  # mixed, unsortable
    mixed = jm.fit(jm.models.logistic_regression, None, (X, y), cov="cluster", clusters=objects)
    np.testing.assert_allclose(mixed.cov, numbers.cov, rtol=1e-12)


def test_fit_batch_masks_and_per_dataset_labels():
    """Each dataset encodes its own labels; masked rows drop out, and so does a cluster whose
    rows are all masked (G counts the clusters of active rows)."""
    X, y, _, g = _data()
    keep = 300
    mask = np.ones((2, N), bool)
    mask[1, keep:] = False
    labels = np.stack([g, np.where(np.arange(N) < keep, (g + 7) % G, G)])
    batch = jm.fit_batch(jm.models.logistic_regression, None, (np.stack([X, X]), np.stack([y, y])),
                         mask=mask, cov="cluster", clusters=labels)
    full = jm.fit(jm.models.logistic_regression, None, (X, y), cov="cluster", clusters=g)
    part = jm.fit(jm.models.logistic_regression, None, (X[:keep], y[:keep]), cov="cluster",
                  clusters=labels[1, :keep])
    np.testing.assert_allclose(batch.cov[0], full.cov, rtol=1e-9)
    np.testing.assert_allclose(batch.cov[1], part.cov, rtol=1e-9)


def test_weights_scale_the_cluster_scores():
    """Frequency weights: doubling each row equals repeating it."""
    X, y, _, g = _data()
    weighted = jm.fit(jm.models.logistic_regression, None, (X, y), cov="cluster", clusters=g,
                      weights=np.full(N, 2.0))
    repeated = jm.fit(jm.models.logistic_regression, None,
                      (np.concatenate([X, X]), np.concatenate([y, y])), cov="cluster",
                      clusters=np.concatenate([g, g]))
    np.testing.assert_allclose(weighted.cov, repeated.cov, rtol=1e-9)


@pytest.mark.heavy  # compiles the grouped (padded) programs
def test_fit_groups_clusters_column():
    X, y, counts, g = _data()
    groups = np.where(np.arange(N) < 200, "north", "south")
    fits = jm.fit_groups(jm.models.poisson_regression, None, counts, groups, x=X[:, 1:],
                         intercept=True, cov="cluster", clusters=g)
    for i, rows in enumerate([slice(0, 200), slice(200, N)]):
        one = jm.fit(jm.models.poisson_regression, None, (X[rows], counts[rows]),
                     cov="cluster", clusters=g[rows])
        np.testing.assert_allclose(fits.fit.cov[i], one.cov, rtol=1e-8)


def test_command_line_cluster_column(tmp_path):
    pd = pytest.importorskip("pandas")
    from jaxmle.tabular._cli import main

    X, y, counts, g = _data()
    pd.DataFrame({"visits": counts, "age": X[:, 1], "income": X[:, 2],
                  "household": [f"h{k}" for k in g]}).to_csv(tmp_path / "in.csv", index=False)
    code = main(["fit", str(tmp_path / "in.csv"), "--model", "poisson_regression", "--x", "age",
                 "--x", "income", "--intercept", "--value", "visits", "--cluster", "household",
                 "-o", str(tmp_path / "out.csv"), "--quiet", "--no-cache"])
    assert code == 0
    out = pd.read_csv(tmp_path / "out.csv")
    one = jm.fit(jm.models.poisson_regression, None, (X, counts), cov="cluster", clusters=g)
    np.testing.assert_allclose([out[f"beta[{j}]_se"][0] for j in range(K)], one.se["beta"],
                               rtol=1e-8)


@pytest.mark.parametrize("options, message", [
    (dict(cov="cluster"), "needs clusters="),
    (dict(clusters=np.arange(N) % 5), 'only used with cov="cluster"'),
    (dict(cov="cluster", clusters=np.arange(10)), "one label per observation"),
    (dict(cov="cluster", clusters=np.zeros(N)), "at least 2 clusters"),
    (dict(cov="cluster", clusters=np.where(np.arange(N) < 5, None, "a")), "missing labels"),
])
def test_clear_errors(options, message):
    X, y, _, _ = _data()
    with pytest.raises(ValueError, match=message):
        jm.fit(jm.models.logistic_regression, None, (X, y), **options)


def test_needs_per_observation_terms():
    X, y, _, g = _data()
    total = lambda params, data: jm.models.logistic_regression.log_density(params, data).sum()
    with pytest.raises(ValueError, match="per-observation"):
        jm.fit(total, {"beta": np.zeros(K)}, (X, y), cov="cluster", clusters=g)
