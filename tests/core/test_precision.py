"""Precision at the public edge: with JAX's global x64 flag off (the user's default), every
public function still computes and returns float64, equal to what it returns with x64 on.

The rest of the suite runs with x64 on globally (conftest), where a missing precision scope
cannot show; here each public function runs inside ``jax.enable_x64(False)``, and every
public function is either decorated with the precision policy and called here, or named
below as computing nothing with JAX.
"""

import inspect

import jax
import numpy as np
import pytest
from jax.scipy import stats

import jaxmle as jm

N = 80
B = 3
START = {"mu": 0.5, "sigma": 1.0}


def _normal(params, x):
    return stats.norm.logpdf(x, params["mu"], params["sigma"])


NORMAL = jm.Model(_normal, constraints={"sigma": jm.positive})
X = np.random.default_rng(11).normal(2.0, 1.5, size=(B, N))


def _fit():
    return jm.fit(NORMAL, START, X[0])


def _batch():
    return jm.fit_batch(NORMAL, START, X)


def _restricted():
    return jm.fit(jm.Model(lambda p, x: _normal({"mu": 2.0, "sigma": p["sigma"]}, x),
                           constraints={"sigma": jm.positive}), {"sigma": 1.0}, X[0])


def _stream():
    blocks = (jm.Block(X[i:i + 2]) for i in range(0, B, 2))
    return jm.concat_fits(jm.fit_stream(NORMAL, START, blocks, block_size=2, total=B))


def _groups():
    return jm.fit_groups(_normal, START, X.ravel(), np.repeat(np.arange(B), N),
                         constraints={"sigma": jm.positive}).fit


def _mixed():
    groups = np.repeat(np.arange(6), 8)
    x = np.random.default_rng(12).normal(size=groups.size) + 0.5 * groups
    return jm.fit_mixed(jm.mixed.gaussian, jm.mixed.gaussian_random(1),
                        {"beta": np.zeros(1), "sigma": 1.0, "L": np.eye(1)},
                        (np.ones((groups.size, 1)), np.ones((groups.size, 1)), x), groups,
                        random=np.zeros(1), constraints={"sigma": jm.positive, "L": jm.cholesky})


PUBLIC_CALLS = {
    "fit": _fit,
    "fit_batch": _batch,
    "fit_stream+concat_fits": _stream,
    "fit_groups": _groups,
    "gather_fits": lambda: jm.gather_fits(_batch()),
    "profile": lambda: jm.profile(_fit(), X[0]),
    "bootstrap": lambda: jm.bootstrap(_fit(), X[0], replicates=20),
    "diagnose": lambda: jm.diagnose(_batch(), X),
    "refit": lambda: jm.refit(_batch(), X, which=np.array([True, False, True]), init=START),
    "multistart": lambda: jm.multistart(NORMAL, START, X[0], starts=3),
    "calibrate": lambda: jm.calibrate(jm.models.normal, None, {"mu": 1.0, "sigma": 2.0},
                                      replicates=5, n=N),
    "lr_test": lambda: jm.lr_test(_restricted(), _fit()),
    "delta_method": lambda: jm.delta_method(lambda p: p["mu"] / p["sigma"], _fit()),
    "wald_test": lambda: jm.wald_test(_fit(), np.array([[1.0, 0.0]]), np.array([2.0])),
    "score_test": lambda: jm.score_test(NORMAL, _restricted(), X[0], fixed={"mu": 2.0}),
    "compare": lambda: jm.compare({"free": _fit(), "mu = 2": _restricted()}).aic,
    "fit_mixed": _mixed,
}

# Public functions that build values or move numpy arrays, computing nothing with JAX.
NOT_COMPUTING = {"censored", "concat_fits", "enable_compilation_cache", "interval",
                 "process_shard"}


def test_every_public_function_is_under_the_policy_and_called_here():
    functions = {name for name in jm.__all__ if inspect.isfunction(getattr(jm, name))}
    scoped = {name for name in functions if hasattr(getattr(jm, name), "__wrapped__")}
    called = {part for key in PUBLIC_CALLS for part in key.split("+")}
    assert NOT_COMPUTING <= functions
    assert functions - NOT_COMPUTING == scoped
    assert scoped <= called, f"not called here: {sorted(scoped - called)}"


def _floats(result):
    """The floating-point array leaves of any result (pytree, tuple, dataclass)."""
    leaves = jax.tree_util.tree_leaves(result)
    return [np.asarray(leaf) for leaf in leaves
            if np.issubdtype(np.asarray(leaf).dtype, np.floating)]


@pytest.mark.parametrize("name", list(PUBLIC_CALLS))
def test_results_are_float64_with_x64_off(name):
    reference = _floats(PUBLIC_CALLS[name]())
    with jax.enable_x64(False):
        assert not jax.config.jax_enable_x64
        result = _floats(PUBLIC_CALLS[name]())
    assert result, f"{name} returned no floating-point arrays"
    assert [leaf.dtype for leaf in result] == [np.dtype(np.float64)] * len(result)
    # The same float64 program runs either way: equal up to the last bits.
    for got, want in zip(result, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, equal_nan=True)
