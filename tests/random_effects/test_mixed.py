"""``jm.fit_mixed`` against independent references: the dense marginal likelihood of a
linear mixed model (numpy/scipy), numerical integration of each group's Laplace integrand
and exact marginal (scipy.integrate.quad), statsmodels ``MixedLM`` (ML) on the dietox data
statsmodels ships; and ``jm.cholesky`` / ``jm.mixed`` pieces against closed forms.

A fit compiles one program per model and shape (several seconds): the numerical checks
share a few fixtures and carry the ``heavy`` marker; structural checks run before anything
is compiled and stay in the fast layer.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, stats

import jaxmle as jm
from jaxmle.core._status import Status
from jaxmle.random_effects import _mixed

# The Laplace log-likelihood of a linear-Gaussian model is exact; both sides evaluate the
# same number in float64 (sums over 200 rows: rounding ~1e-13 relative).
EXACT_RTOL = 1e-12
# The outer fit stops at relative gradient 1e-10: estimates within ~1e-8 of the optimum
# found independently by scipy (whose BFGS stops at gtol 1e-9, i.e. ~1e-7 relative).
OPTIMUM_RTOL = 1e-5

LMM_CONSTRAINTS = {"sigma": jm.positive, "L": jm.cholesky}


def _lmm_data(seed=1, groups=40, rows=6):
    """Random intercept + slope data with string labels, NaN rows and one group left with
    a single usable row (fewer than its two random effects)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows)
    x = rng.normal(size=g.size)
    X = np.column_stack([np.ones_like(x), x])
    b = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]], groups)
    y = X @ np.array([1.0, 0.5]) + (X * b[g]).sum(1) + rng.normal(0, 0.5, g.size)
    y[[3, 17]] = np.nan                       # two excluded rows (groups 0 and 2)
    y[rows * 5 + 1: rows * 6] = np.nan        # group 5 keeps one row
    labels = np.array([f"school-{k:02d}" for k in range(groups)])[g]
    order = rng.permutation(g.size)           # rows in no particular order
    return X[order], X[order].copy(), y[order], labels[order]


@pytest.fixture(scope="module")
def lmm():
    X, Z, y, labels = _lmm_data()
    init = {"beta": np.zeros(2), "sigma": 1.0, "L": np.eye(2)}
    fit = jm.fit_mixed(jm.mixed.gaussian, jm.mixed.gaussian_random(2), init, (X, Z, y),
                       labels, random=np.zeros(2), constraints=LMM_CONSTRAINTS)
    return fit, (X, Z, y, labels)


def _dense_loglik(params, X, Z, y, labels):
    """sum_g log N(y_g; X_g beta, Z_g L L' Z_g' + sigma^2 I) over the finite rows."""
    keep = np.isfinite(y)
    total = 0.0
    cov_u = params["L"] @ params["L"].T
    for label in np.unique(labels):
        rows = keep & (labels == label)
        if not rows.any():
            continue
        cov = Z[rows] @ cov_u @ Z[rows].T + params["sigma"] ** 2 * np.eye(rows.sum())
        total += stats.multivariate_normal(X[rows] @ params["beta"], cov).logpdf(y[rows])
    return total


@pytest.mark.heavy
def test_linear_gaussian_is_the_dense_marginal_likelihood(lmm):
    fit, (X, Z, y, labels) = lmm
    assert fit.converged and (fit.random_status == Status.CONVERGED).all()
    np.testing.assert_allclose(fit.loglik, _dense_loglik(fit.params, X, Z, y, labels),
                               rtol=EXACT_RTOL)

    # The optimum, found independently: scipy BFGS on the dense likelihood.
    def negative(v):
        L = np.array([[np.exp(v[3]), 0.0], [v[4], np.exp(v[5])]])
        return -_dense_loglik({"beta": v[:2], "sigma": np.exp(v[2]), "L": L}, X, Z, y, labels)

    p = fit.params
    start = np.array([*p["beta"], np.log(p["sigma"]) + 0.05, np.log(p["L"][0, 0]) - 0.05,
                      p["L"][1, 0] + 0.05, np.log(p["L"][1, 1])])
    best = optimize.minimize(negative, start, method="BFGS", options={"gtol": 1e-9})
    assert fit.loglik >= -best.fun - 1e-9
    np.testing.assert_allclose(p["beta"], best.x[:2], rtol=OPTIMUM_RTOL)
    np.testing.assert_allclose(p["sigma"], np.exp(best.x[2]), rtol=OPTIMUM_RTOL)

    # Conditional modes and SDs: u | y_g is Gaussian with covariance
    # (Z'Z / sigma^2 + (L L')^-1)^-1 and mean that times Z'(y - X beta) / sigma^2.
    cov_u = p["L"] @ p["L"].T
    for i in (0, 5, 17):
        rows = np.isfinite(y) & (labels == fit.labels[i])
        precision = Z[rows].T @ Z[rows] / p["sigma"] ** 2 + np.linalg.inv(cov_u)
        cov = np.linalg.inv(precision)
        mean = cov @ Z[rows].T @ (y[rows] - X[rows] @ p["beta"]) / p["sigma"] ** 2
        np.testing.assert_allclose(fit.random[i], mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.random_se[i], np.sqrt(np.diag(cov)), rtol=1e-9)


@pytest.mark.heavy
def test_the_closed_form_gaussian_path_is_the_laplace_path(lmm):
    # jm.mixed.gaussian with gaussian_random(q) is fitted by its closed-form marginal
    # (random_effects._gaussian); any other log_density by inner Newton and the Laplace
    # terms. A wrapper of the same density takes the second path: both are the exact
    # likelihood, so they agree to rounding and to the outer stopping test.
    fit, (X, Z, y, labels) = lmm
    wrapped = lambda params, u, data: jm.mixed.gaussian(params, u, data)
    laplace = jm.fit_mixed(wrapped, jm.mixed.gaussian_random(2), dict(fit.params), (X, Z, y),
                           labels, random=np.zeros(2), constraints=LMM_CONSTRAINTS)
    assert fit.method == "newton (exact marginal)" and laplace.method == "newton (Laplace)"
    assert laplace.converged and laplace.n_iter <= 3  # started at the optimum
    np.testing.assert_allclose(laplace.loglik, fit.loglik, rtol=EXACT_RTOL)
    for name in ("beta", "sigma", "L"):
        np.testing.assert_allclose(laplace.params[name], fit.params[name], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(laplace.se[name], fit.se[name], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(laplace.random, fit.random, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(laplace.random_se, fit.random_se, rtol=1e-9)
    np.testing.assert_array_equal(laplace.random_status, fit.random_status)


@pytest.mark.heavy
def test_rows_labels_and_small_groups(lmm):
    fit, (X, Z, y, labels) = lmm
    assert fit.labels.tolist() == sorted(set(labels.tolist()))
    excluded = dict(zip(fit.labels, fit.n_excluded))
    assert excluded["school-00"] == 1 and excluded["school-02"] == 1
    assert excluded["school-05"] == 5 and sum(excluded.values()) == 7
    assert fit.n_rows.tolist() == [6] * 40 and float(fit.n_obs) == 240 - 7
    # A group with one row and two random effects: well posed through N(0, L L').
    assert fit.random_status[5] == Status.CONVERGED and np.all(np.isfinite(fit.random_se[5]))
    assert fit.failed_groups.size == 0
    text = fit.summary()
    assert "Laplace" in text and "groups 40" in text and "rows excluded 7" in text
    lower, upper = fit.conf_int()
    assert lower["sigma"] < fit.params["sigma"] < upper["sigma"]


# ----- a GLMM with a scalar random intercept: numerical integration ------------------------

def _poisson_data(seed, groups=30, rows=8, beta=(0.3, 0.4), sd=0.6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows)
    x = rng.normal(size=g.size)
    X = np.column_stack([np.ones_like(x), x])
    eta = X @ np.array(beta) + rng.normal(0, sd, groups)[g]
    return X, np.ones((g.size, 1)), rng.poisson(np.exp(eta)).astype(float), g


POISSON_INIT = {"beta": np.zeros(2), "L": np.eye(1)}


def _poisson_fit(X, Z, y, g):
    return jm.fit_mixed(jm.mixed.poisson, jm.mixed.gaussian_random(1), POISSON_INIT,
                        (X, Z, y), g, random=np.zeros(1), constraints={"L": jm.cholesky})


@pytest.mark.heavy
def test_poisson_intercept_against_numerical_integration():
    X, Z, y, g = _poisson_data(0)
    fit = _poisson_fit(X, Z, y, g)
    assert fit.converged
    beta, s = fit.params["beta"], float(fit.params["L"][0, 0])
    laplace_total, exact_total = 0.0, 0.0
    for k in range(30):
        rows = g == k
        eta0, yk = X[rows] @ beta, y[rows]

        def log_joint(u):
            return (stats.poisson.logpmf(yk, np.exp(eta0 + u)).sum()
                    + stats.norm.logpdf(u, 0.0, s))

        mode = optimize.minimize_scalar(lambda u: -log_joint(u), bracket=(-3, 3),
                                        options={"xtol": 1e-13}).x
        for _ in range(3):  # Brent stops at ~sqrt(eps): Newton polishes the mode to rounding
            mode += ((yk - np.exp(eta0 + mode)).sum() - mode / s ** 2) / (
                np.exp(eta0 + mode).sum() + 1 / s ** 2)
        curvature = np.exp(eta0 + mode).sum() + 1 / s ** 2    # -d2/du2 log_joint
        top = log_joint(mode)
        # The Laplace integrand (a Gaussian about the mode), integrated numerically.
        gauss, _ = integrate.quad(lambda u: np.exp(-0.5 * curvature * (u - mode) ** 2),
                                  -np.inf, np.inf, epsabs=0, epsrel=1e-13)
        exact, _ = integrate.quad(lambda u: np.exp(log_joint(u) - top), mode - 12 / np.sqrt(curvature),
                                  mode + 12 / np.sqrt(curvature), epsabs=0, epsrel=1e-12)
        laplace_total += top + np.log(gauss)
        exact_total += top + np.log(exact)
        np.testing.assert_allclose(fit.random[k, 0], mode, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fit.random_se[k, 0], 1 / np.sqrt(curvature), rtol=1e-10)
    np.testing.assert_allclose(fit.loglik, laplace_total, rtol=1e-11)
    # The Laplace error per group is O(1/n_g); with 8 counts per group it is small but real.
    assert 0 < abs(exact_total - laplace_total) < 0.02 * 30


# ----- statsmodels MixedLM (ML) on dietox ------------------------------------------------

def _dietox():
    import statsmodels.regression.tests.results as results
    path = pathlib.Path(results.__path__[0]) / "dietox.csv"
    if not path.exists():
        pytest.skip("statsmodels' dietox.csv is not installed")
    import pandas as pd
    return pd.read_csv(path)


@pytest.mark.heavy
def test_agrees_with_statsmodels_mixedlm_ml():
    sm = pytest.importorskip("statsmodels.formula.api")
    data = _dietox()
    reference = sm.mixedlm("Weight ~ Time", data, groups=data["Pig"],
                           re_formula="~Time").fit(reml=False, method=["lbfgs"])
    X = np.column_stack([np.ones(len(data)), data["Time"].to_numpy(float)])
    y = data["Weight"].to_numpy(float)
    init = {"beta": np.array([y.mean(), 0.0]), "sigma": y.std(), "L": np.eye(2)}
    fit = jm.fit_mixed(jm.mixed.gaussian, jm.mixed.gaussian_random(2), init, (X, X, y),
                       data["Pig"].to_numpy(), random=np.zeros(2), constraints=LMM_CONSTRAINTS)
    assert fit.converged
    assert fit.loglik >= reference.llf - 1e-8
    np.testing.assert_allclose(fit.loglik, reference.llf, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fit.params["beta"], reference.fe_params, rtol=1e-6)
    np.testing.assert_allclose(fit.se["beta"], reference.bse_fe, rtol=1e-4)
    np.testing.assert_allclose(fit.params["sigma"] ** 2, reference.scale, rtol=1e-5)
    L = fit.params["L"]
    np.testing.assert_allclose(L @ L.T, reference.cov_re.to_numpy(), rtol=1e-4)


@pytest.mark.heavy
def test_poisson_wald_coverage():
    """95% Wald intervals of the fixed effects cover the truth in about 95% of 200
    simulated datasets (binomial SD 1.5%; the bounds are 3 SDs)."""
    truth = np.array([0.3, 0.4])
    covered, fits = np.zeros(2), 0
    for seed in range(200):
        fit = _poisson_fit(*_poisson_data(100 + seed))
        if not fit.converged:
            continue
        lower, upper = fit.conf_int(0.95)
        covered += (lower["beta"] <= truth) & (truth <= upper["beta"])
        fits += 1
    assert fits >= 195
    rate = covered / fits
    assert np.all((rate > 0.905) & (rate < 0.995)), rate


@pytest.mark.heavy
def test_singular_inner_hessian_is_named_per_group():
    # A flat random-effect density and a group whose random slope multiplies zeros: its
    # conditional mode is not determined (-H singular).
    X, Z, y, g = _poisson_data(3, groups=6, rows=8)
    Z = np.where(g[:, None] == 4, 0.0, Z)
    flat = lambda params, u: 0.0 * jnp.sum(u)
    fit = jm.fit_mixed(jm.mixed.poisson, flat, {"beta": np.zeros(2)}, (X, Z, y), g,
                       random=np.zeros(1))
    assert fit.random_status[4] == Status.SINGULAR_HESSIAN
    assert fit.failed_groups.tolist() == [4]
    assert not fit.converged and fit.status == Status.NONFINITE_START
    assert "groups whose conditional mode failed: 4" in fit.summary()


# ----- structural errors: raised before anything is compiled -------------------------------

def _small():
    X, Z, y, g = _poisson_data(0, groups=4, rows=3)
    return (X, Z, y), g


def test_log_random_must_return_a_scalar():
    data, g = _small()
    with pytest.raises(ValueError, match=r"log_random\(params, u\) must return .* scalar"):
        jm.fit_mixed(jm.mixed.poisson, lambda params, u: u, POISSON_INIT, data, g,
                     random=np.zeros(1))


def test_log_density_must_return_per_observation_terms():
    data, g = _small()
    with pytest.raises(ValueError, match=r"per-observation terms of one group.*\(3,\)"):
        jm.fit_mixed(lambda p, u, d: jnp.sum(jm.mixed.poisson(p, u, d)),
                     jm.mixed.gaussian_random(1), POISSON_INIT, data, g, random=np.zeros(1))


def test_rows_must_line_up_and_labels_be_present():
    (X, Z, y), g = _small()
    with pytest.raises(ValueError, match="one row per observation"):
        jm.fit_mixed(jm.mixed.poisson, jm.mixed.gaussian_random(1), POISSON_INIT,
                     (X, Z, y[:-1]), g, random=np.zeros(1))
    with pytest.raises(ValueError, match="one label per row"):
        jm.fit_mixed(jm.mixed.poisson, jm.mixed.gaussian_random(1), POISSON_INIT,
                     (X, Z, y), g[:-1], random=np.zeros(1))
    labels = np.array(["a", None] * 6, dtype=object)
    with pytest.raises(ValueError, match="missing group label"):
        jm.fit_mixed(jm.mixed.poisson, jm.mixed.gaussian_random(1), POISSON_INIT,
                     (X, Z, y), labels, random=np.zeros(1))
    with pytest.raises(ValueError, match="outside the support of jm.cholesky"):
        jm.fit_mixed(jm.mixed.poisson, jm.mixed.gaussian_random(1),
                     {"beta": np.zeros(2), "L": -np.eye(1)}, (X, Z, y), g,
                     random=np.zeros(1), constraints={"L": jm.cholesky})


def test_grouping_pads_each_group_with_its_own_rows():
    X, Z, y, labels = _lmm_data()
    grouping = _mixed._Grouping((X, Z, y), labels, np.float64)
    ((members, ((data, mask), valid)),) = grouping.buckets(2048)
    assert mask.shape == (40, 6) and members.tolist() == list(range(40)) and valid.all()
    # Equal chunks: 40 groups in chunks of at most 16 are 3 chunks of 14, two added groups
    # with every row masked.
    ((members, ((_, chunked), valid)),) = grouping.buckets(16)
    assert chunked.shape == (42, 6) and members.size == 40 and valid.sum() == 40
    assert not chunked[~valid].any()
    assert mask.sum(1).tolist() == grouping.kept.tolist()
    _, _, y_padded = data
    assert np.all(np.isfinite(y_padded))
    for i in (0, 5, 11):
        rows = np.isfinite(y) & (labels == grouping.labels[i])
        assert sorted(y_padded[i][mask[i]]) == sorted(y[rows])


@pytest.mark.parametrize("q, constraints", [(1, {"L": jm.cholesky}), (2, LMM_CONSTRAINTS),
                                            (3, LMM_CONSTRAINTS)])
def test_closed_form_derivatives_are_those_of_the_dense_likelihood(q, constraints):
    # The closed form's hand-written gradient and Hessian (summed over groups in
    # (beta, sigma^2, L L'), carried to z by the chain rule) against automatic
    # differentiation of the dense marginal likelihood, away from the optimum; groups of 0 to
    # 12 rows (the empty one contributes nothing); sigma unconstrained for q = 1 (negative
    # values allowed: only sigma^2 enters). Both sides are float64 sums of a few terms.
    from jaxmle.core import _parameters
    from jaxmle.random_effects import _gaussian, _laplace
    with jax.enable_x64(True):
        rng = np.random.default_rng(q)
        p, sizes, width = 2, (1, 3, 7, 0, 12), 12
        init = {"beta": rng.normal(size=p), "sigma": 0.7, "L": np.eye(q)}
        space = _parameters.build(init, constraints)
        layout, _, _ = _mixed._random_layout(np.zeros(q), np.dtype("float64"))
        model = _laplace.GroupModel(jm.mixed.gaussian, jm.mixed.gaussian_random(q), space,
                                    layout, 50)
        z = jnp.asarray(rng.normal(scale=0.5, size=space.n_free))
        groups = [(rng.normal(size=(n, p)), rng.normal(size=(n, q)), 2.0 * rng.normal(size=n))
                  for n in sizes]
        padded = [tuple(np.pad(a, [(0, width - n)] + [(0, 0)] * (a.ndim - 1)) for a in group)
                  for n, group in zip(sizes, groups)]
        cross, count = jax.vmap(_gaussian.statistics)(
            tuple(np.stack(leaves) for leaves in zip(*padded)),
            np.arange(width)[None, :] < np.array(sizes)[:, None])

        def dense(v):
            params = space.to_constrained(v)
            cov_u = jnp.tril(params["L"]) @ jnp.tril(params["L"]).T
            total = 0.0
            for X, Z, y in groups[:3] + groups[4:]:
                cov = Z @ cov_u @ Z.T + params["sigma"] ** 2 * jnp.eye(y.size)
                r = y - X @ params["beta"]
                total += -0.5 * (y.size * np.log(2 * np.pi) + jnp.linalg.slogdet(cov)[1]
                                 + r @ jnp.linalg.solve(cov, r))
            return total

        f, g, h, mode = jax.jit(_gaussian.derivatives, static_argnums=0)(model, z, cross, count)
        want = jax.jit(lambda v: (dense(v), jax.grad(dense)(v), jax.hessian(dense)(v)))(z)
        np.testing.assert_allclose(f, want[0], rtol=1e-12)
        np.testing.assert_allclose(g, want[1], rtol=1e-10, atol=1e-10 * np.abs(want[1]).max())
        np.testing.assert_allclose(h, want[2], rtol=1e-10, atol=1e-10 * np.abs(want[2]).max())

        # Conditional mode and SDs of the group of 7 rows: u | y is Gaussian with covariance
        # (Z'Z / sigma^2 + (L L')^-1)^-1 and mean that times Z'(y - X beta) / sigma^2.
        params = jax.tree_util.tree_map(np.asarray, space.to_constrained(z))
        X, Z, y = groups[2]
        cov = np.linalg.inv(Z.T @ Z / params["sigma"] ** 2
                            + np.linalg.inv(np.tril(params["L"]) @ np.tril(params["L"]).T))
        np.testing.assert_allclose(mode.u[2], cov @ Z.T @ (y - X @ params["beta"])
                                   / params["sigma"] ** 2, rtol=1e-10)
        np.testing.assert_allclose(mode.sd[2], np.sqrt(np.diag(cov)), rtol=1e-10)
        assert (mode.status == Status.CONVERGED).all()


# ----- jm.cholesky and the ready pieces -----------------------------------------------------

def test_cholesky_round_trip_and_jacobian():
    with jax.enable_x64(True):
        L = np.array([[1.5, 0.0, 0.0], [-0.3, 0.2, 0.0], [2.0, 0.7, 3.0]])
        z = jm.cholesky.to_unconstrained(L)
        assert z.shape == (6,) == jm.cholesky.free_shape((3, 3))
        np.testing.assert_allclose(jm.cholesky.to_constrained(z), L, rtol=1e-15)
        np.testing.assert_allclose(np.asarray(z)[[0, 2, 5]], np.log([1.5, 0.2, 3.0]), rtol=1e-15)
        jacobian = jax.jacfwd(jm.cholesky.to_constrained)(z)
        assert jacobian[0, 0, 0] == pytest.approx(1.5) and jacobian[1, 0, 1] == 1.0
        assert np.all(jacobian[0, 1] == 0) and np.all(jacobian[0, 2] == 0)
    from jaxmle.core._constraints import Cholesky
    assert Cholesky() == jm.cholesky and hash(Cholesky()) == hash(jm.cholesky)
    assert "lower-triangular" in jm.cholesky.violation(np.array([[1.0, 1.0], [0.0, 1.0]]))
    assert "> 0" in jm.cholesky.violation(np.array([[1.0, 0.0], [0.0, -1.0]]))
    assert "square" in jm.cholesky.violation(np.zeros(3))
    assert jm.cholesky.violation(L) is None


def test_ready_pieces_match_scipy():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        X, Z = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
        params = {"beta": np.array([0.2, -0.1]), "sigma": 0.7,
                  "L": np.array([[1.2, 0.0], [0.4, 0.5]])}
        u = np.array([0.3, -0.6])
        eta = X @ params["beta"] + Z @ u
        y = rng.normal(size=5)
        np.testing.assert_allclose(jm.mixed.gaussian(params, u, (X, Z, y)),
                                   stats.norm.logpdf(y, eta, 0.7), rtol=1e-13)
        b = (y > 0).astype(float)
        np.testing.assert_allclose(jm.mixed.logistic(params, u, (X, Z, b)),
                                   stats.bernoulli.logpmf(b, 1 / (1 + np.exp(-eta))), rtol=1e-12)
        c = np.array([0.0, 1.0, 4.0, 2.0, 7.0])
        np.testing.assert_allclose(jm.mixed.poisson(params, u, (X, Z, c)),
                                   stats.poisson.logpmf(c, np.exp(eta)), rtol=1e-12)
        cov = params["L"] @ params["L"].T
        np.testing.assert_allclose(jm.mixed.gaussian_random(2)(params, u),
                                   stats.multivariate_normal([0, 0], cov).logpdf(u), rtol=1e-13)
    assert jm.mixed.gaussian_random(2) == jm.mixed.gaussian_random(2)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        jm.mixed.gaussian_random(0)
